package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/pushrules/pushgateway"

	"porthole/internal/netguard"
)

// Gateway requests go to URLs that users chose, so the client that sends them refuses, on
// the address it is about to connect to (after DNS, and for every connection), anything
// that is not a public unicast address: loopback, private, link-local, multicast and the
// other special ranges (internal/netguard), unless allowPrivate. It never
// follows redirects and uses no proxy from the environment.

// gateway posts notifications to push gateways.
type gateway struct {
	client  *http.Client
	refused atomic.Int64
}

// maxGatewayResponse bounds what is read of a gateway's answer.
const maxGatewayResponse = 64 << 10

func newGateway(allowPrivate bool, extraRoots []byte) (*gateway, error) {
	roots, err := netguard.RootCAs(extraRoots)
	if err != nil {
		return nil, fmt.Errorf("push_trust: %w", err)
	}
	g := &gateway{}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: netguard.Control(allowPrivate, "push gateway", func() { g.refused.Add(1) })}
	g.client = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return g, nil
}

// post sends one notification and returns the pushkeys the gateway rejected.
func (g *gateway) post(ctx context.Context, url string, notification any) ([]string, error) {
	body, err := json.Marshal(map[string]any{"notification": notification})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Porthole (push)")
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxGatewayResponse))
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("push gateway answered %d", resp.StatusCode)
	}
	// mautrix's response type; an answer that is not JSON is a failure (as in Synapse).
	var rp pushgateway.RespPush
	if err := json.Unmarshal(raw, &rp); err != nil {
		return nil, fmt.Errorf("push gateway answered with something not JSON: %w", err)
	}
	return rp.Rejected, nil
}
