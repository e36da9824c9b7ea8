package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"maunium.net/go/mautrix/pushrules/pushgateway"
)

// Gateway requests go to URLs that users chose, so the client that sends them refuses, on
// the address it is about to connect to (after DNS, and for every connection), anything
// that is not a public unicast address: loopback, private, link-local, multicast and the
// other special ranges (the list Synapse blocks by default), unless allowPrivate. It never
// follows redirects and uses no proxy from the environment.

// errForbiddenAddress is the refusal of a gateway address.
var errForbiddenAddress = errors.New("push gateway address is loopback, private or otherwise not public")

var forbiddenPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// forbiddenAddress reports whether a gateway may not be reached at addr.
func forbiddenAddress(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range forbiddenPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// gateway posts notifications to push gateways.
type gateway struct {
	client  *http.Client
	refused atomic.Int64
}

// maxGatewayResponse bounds what is read of a gateway's answer.
const maxGatewayResponse = 64 << 10

func newGateway(allowPrivate bool, extraRoots []byte) (*gateway, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(extraRoots) > 0 && !roots.AppendCertsFromPEM(extraRoots) {
		return nil, errors.New("push_trust: no PEM certificate found")
	}
	g := &gateway{}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || forbiddenAddress(ap.Addr()) {
				g.refused.Add(1)
				return fmt.Errorf("%w: %s", errForbiddenAddress, address)
			}
			return nil
		}
	}
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
