package appservice

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
	"net/url"
	"time"
)

// Calls to services go to the URLs of their registrations, which the administrator wrote
// (often loopback): unlike push gateways, no address is refused. Redirects are never
// followed (an answer that redirects is a failure), no proxy from the environment is
// used, and every call has a deadline.

// maxAnswer bounds what is read of a service's answer.
const maxAnswer = 1 << 20

// callError is a call that failed: Timeout when the service did not answer in time,
// Status and Body when it answered something else than success.
type callError struct {
	Timeout bool
	Status  int
	Body    string
	Err     error
}

func (e *callError) Error() string {
	switch {
	case e.Timeout:
		return "timed out"
	case e.Status != 0:
		return fmt.Sprintf("answered %d", e.Status)
	}
	return e.Err.Error()
}

func (e *callError) Unwrap() error { return e.Err }

func newHTTPClient(trustPEM []byte) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(trustPEM) > 0 && !roots.AppendCertsFromPEM(trustPEM) {
		return nil, errors.New("trust: no PEM certificate found")
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// call sends one request to a service (path under its URL, query already encoded) and
// decodes a 2xx JSON answer into out (nil: any JSON). It returns a *callError otherwise.
func (s *Service) call(ctx context.Context, reg *Registration, method, path string, query url.Values, body any, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	u := reg.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return &callError{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+reg.HSToken)
	req.Header.Set("User-Agent", "Porthole")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return &callError{Timeout: true, Err: err}
		}
		return &callError{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		if ctx.Err() != nil {
			return &callError{Timeout: true, Err: err}
		}
		return &callError{Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &callError{Status: resp.StatusCode, Body: string(raw), Err: fmt.Errorf("answered %d", resp.StatusCode)}
	}
	if out == nil {
		var v any
		out = &v
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &callError{Status: resp.StatusCode, Body: string(raw), Err: fmt.Errorf("answered %d with a body that is not the expected JSON: %w", resp.StatusCode, err)}
	}
	return nil
}
