// Package federation talks to other homeservers: server-name resolution, signed requests
// and their verification, and signing-key fetching, storage and notary answers. mautrix's
// federation package does the protocol work (its Client, resolver and X-Matrix signing);
// this package adds the policy around it: which addresses may be dialled, which
// certificates are trusted, where keys are kept and how often servers are asked.
package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mau.fi/util/exhttp"
	mfed "maunium.net/go/mautrix/federation"

	"porthole/internal/netguard"
)

// ClientConfig configures outgoing federation requests.
type ClientConfig struct {
	ServerName string
	Key        *mfed.SigningKey
	// AllowPrivate lets requests go to loopback, private and link-local addresses.
	AllowPrivate bool
	// TrustPEM holds certificates trusted besides the system's roots.
	TrustPEM []byte
	// DNS resolves SRV records and host names; nil is the system's resolver.
	DNS *net.Resolver
	// DialAddress, when set, rewrites every address before it is dialled (after the
	// checks that matter run on the address actually connected to). Tests use it to serve
	// https://name:443 from a loopback port; it is nil otherwise.
	DialAddress func(addr string) string
}

// Bounds on outgoing requests.
const (
	dialTimeout      = 10 * time.Second
	responseTimeout  = 60 * time.Second
	requestTimeout   = 2 * time.Minute
	maxResponseBytes = 64 << 20
	wellKnownTimeout = 10 * time.Second
)

// Client sends requests to other servers: mautrix's federation client (resolution of
// server names as the spec has it, X-Matrix signing), dialling only the addresses the
// policy allows and trusting the system's roots plus the configured bundle. Every
// request is counted and logged.
type Client struct {
	*mfed.Client
	log      *slog.Logger
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	keys     *prometheus.CounterVec
	refused  prometheus.Counter
}

// NewClient builds the outgoing client.
func NewClient(cfg ClientConfig, log *slog.Logger) (*Client, error) {
	roots, err := netguard.RootCAs(cfg.TrustPEM)
	if err != nil {
		return nil, fmt.Errorf("federation trust bundle: %w", err)
	}
	c := &Client{
		log: log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "porthole_federation_outbound_requests_total",
			Help: "Requests sent to other servers, by outcome (ok, http_4xx, http_5xx, refused, error)."}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "porthole_federation_outbound_request_duration_seconds",
			Help: "Durations of requests sent to other servers.", Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60}}),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "porthole_federation_key_fetches_total",
			Help: "Fetches of other servers' signing keys, by source (direct, notary) and outcome (ok, error)."}, []string{"source", "outcome"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "porthole_federation_refused_addresses_total",
			Help: "Outgoing federation connections refused: not a public address."}),
	}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	settings := exhttp.SensibleClientSettings.WithDialTimeout(dialTimeout).WithTLSConfig(tlsConf).
		WithResponseHeaderTimeout(responseTimeout).WithGlobalTimeout(requestTimeout)
	mc := mfed.NewClient(cfg.ServerName, cfg.Key, nil, settings)
	mc.ResponseSizeLimit = maxResponseBytes
	mc.UserAgent = "Porthole"
	// The address policy runs on the socket address about to be connected to, after DNS:
	// a name that resolves to a private address when dialled is refused (DNS rebinding).
	mc.Dialer.ControlContext = nil
	mc.Dialer.Control = netguard.Control(cfg.AllowPrivate, "federation", c.refused.Inc)
	mc.Dialer.Resolver = cfg.DNS
	dial := mc.Dialer.DialContext
	if cfg.DialAddress != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return mc.Dialer.DialContext(ctx, network, cfg.DialAddress(addr))
		}
	}
	srt, ok := mc.HTTP.Transport.(*mfed.ServerResolvingTransport)
	if !ok {
		return nil, errors.New("mautrix federation client without its resolving transport")
	}
	srt.DialFunc = dial
	dns := cfg.DNS
	if dns == nil {
		dns = net.DefaultResolver
	}
	// .well-known lookups go through the same dialler and trust as everything else (by
	// default mautrix would use http.DefaultClient).
	srt.ResolveOpts = &mfed.ResolveServerNameOpts{DNSClient: dns, HTTPClient: &http.Client{
		Timeout: wellKnownTimeout,
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: tlsConf, TLSHandshakeTimeout: dialTimeout,
			ResponseHeaderTimeout: wellKnownTimeout, MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 || req.URL.Scheme != "https" {
				return errors.New("too many or insecure .well-known redirects")
			}
			return nil
		},
	}}
	mc.HTTP.Transport = &observedTransport{next: srt, c: c}
	mc.ExtHTTP = nil // nothing outside federation is fetched yet
	c.Client = mc
	return c, nil
}

// Collectors are the client's metrics.
func (c *Client) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.requests, c.duration, c.keys, c.refused}
}

// observedTransport logs and counts every outgoing request.
type observedTransport struct {
	next http.RoundTripper
	c    *Client
}

func (t *observedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// The resolving transport rewrites the URL in place: note the destination first.
	dest, method, path := req.URL.Host, req.Method, req.URL.Path
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	d := time.Since(start)
	t.c.duration.Observe(d.Seconds())
	switch {
	case errors.Is(err, netguard.ErrForbiddenAddress):
		t.c.requests.WithLabelValues("refused").Inc()
	case err != nil:
		t.c.requests.WithLabelValues("error").Inc()
	case resp.StatusCode >= 500:
		t.c.requests.WithLabelValues("http_5xx").Inc()
	case resp.StatusCode >= 400:
		t.c.requests.WithLabelValues("http_4xx").Inc()
	default:
		t.c.requests.WithLabelValues("ok").Inc()
	}
	if err != nil {
		t.c.log.Warn("federation request failed", "dest", dest, "method", method, "path", path, "dur", d, "err", err)
	} else {
		t.c.log.Info("federation request", "dest", dest, "method", method, "path", path, "status", strconv.Itoa(resp.StatusCode), "dur", d)
	}
	return resp, err
}
