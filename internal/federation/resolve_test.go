package federation_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	mfed "maunium.net/go/mautrix/federation"

	"porthole/internal/federation"
	"porthole/internal/hstest"
	"porthole/internal/netguard"
)

// The parts of server-name resolution that need no lookup: IP literals and explicit
// ports (spec steps 1 and 2), and names that are not server names.
func TestResolveWithoutLookups(t *testing.T) {
	for _, c := range []struct {
		name, addr, host string
	}{
		{"1.2.3.4", "1.2.3.4:8448", "1.2.3.4"},
		{"1.2.3.4:99", "1.2.3.4:99", "1.2.3.4:99"},
		{"[2001:db8::1]", "[2001:db8::1]:8448", "[2001:db8::1]"},
		{"[2001:db8::1]:99", "[2001:db8::1]:99", "[2001:db8::1]:99"},
		{"example.org:99", "example.org:99", "example.org:99"},
		{"localhost:8448", "localhost:8448", "localhost:8448"},
	} {
		got, err := mfed.ResolveServerName(context.Background(), c.name)
		if err != nil || len(got.IPPort) != 1 || got.IPPort[0] != c.addr || got.HostHeader != c.host {
			t.Errorf("%s: %+v %v, want %s with Host %s", c.name, got, err, c.addr, c.host)
		}
	}
	for _, bad := range []string{"", "localhost:http", "exa mple.org", "[example.org]", "example.org/x", strings.Repeat("a", 256)} {
		if _, err := mfed.ResolveServerName(context.Background(), bad); err == nil {
			t.Errorf("%q resolved", bad)
		}
	}
}

func TestForbiddenAddresses(t *testing.T) {
	for addr, forbidden := range map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true, "169.254.1.1": true, "100.64.0.1": true,
		"0.0.0.0": true, "224.0.0.1": true, "::1": true, "::": true, "fe80::1": true, "fc00::1": true, "::ffff:127.0.0.1": true,
		"8.8.8.8": false, "1.1.1.1": false, "2606:4700::1111": false, "::ffff:8.8.8.8": false,
	} {
		if got := netguard.Forbidden(netip.MustParseAddr(addr)); got != forbidden {
			t.Errorf("%s: forbidden %v, want %v", addr, got, forbidden)
		}
	}
}

// dnsServer answers A and SRV questions from tables, NXDOMAIN for anything else.
type dnsServer struct {
	addr    string
	a       map[string]string                 // name. → IPv4
	srv     map[string]dnsmessage.SRVResource // _service._tcp.name. → target
	queries atomic.Int64
}

func startDNS(t *testing.T, a map[string]string, srv map[string]dnsmessage.SRVResource) *dnsServer {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &dnsServer{addr: pc.LocalAddr().String(), a: a, srv: srv}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			d.queries.Add(1)
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			name := strings.ToLower(q.Name.String())
			ip, hasA := d.a[name]
			target, hasSRV := d.srv[name]
			switch {
			case q.Type == dnsmessage.TypeA && hasA, q.Type == dnsmessage.TypeSRV && hasSRV:
			case hasA || hasSRV:
				// The name exists without this type: an empty answer.
			default:
				b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
			}
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			if q.Type == dnsmessage.TypeA && hasA {
				addr := netip.MustParseAddr(ip).As4()
				b.AResource(rh, dnsmessage.AResource{A: addr})
			}
			if q.Type == dnsmessage.TypeSRV && hasSRV {
				b.SRVResource(rh, target)
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return d
}

func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", d.addr)
	}}
}

func testClient(t *testing.T, ca *hstest.CA, dns *net.Resolver, dialAddress func(string) string) *federation.Client {
	t.Helper()
	c, err := federation.NewClient(federation.ClientConfig{ServerName: "tester.porthole.test", Key: mfed.GenerateSigningKey(),
		AllowPrivate: true, TrustPEM: mustRead(t, ca.BundleFile), DNS: dns, DialAddress: dialAddress}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func portOf(t *testing.T, rawURL string) uint16 {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	var p uint16
	fmt.Sscan(port, &p)
	return p
}

// SRV records: _matrix-fed._tcp first, then the deprecated _matrix._tcp, each naming a
// target whose address is looked up; the certificate must be valid for the server name.
func TestResolveSRV(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	port := portOf(t, s.FedURL)
	target := func(name string) dnsmessage.SRVResource {
		return dnsmessage.SRVResource{Priority: 10, Weight: 1, Port: port, Target: dnsmessage.MustNewName(name)}
	}
	dns := startDNS(t, map[string]string{"fed.porthole.test.": "127.0.0.1"}, map[string]dnsmessage.SRVResource{
		"_matrix-fed._tcp.srv.porthole.test.": target("fed.porthole.test."),
		"_matrix._tcp.old.porthole.test.":     target("fed.porthole.test."),
		// Both: the new one wins (the old one points nowhere).
		"_matrix-fed._tcp.both.porthole.test.": target("fed.porthole.test."),
		"_matrix._tcp.both.porthole.test.":     {Priority: 10, Weight: 1, Port: 1, Target: dnsmessage.MustNewName("fed.porthole.test.")},
	})
	c := testClient(t, s.CA, dns.resolver(), nil)
	for _, name := range []string{"srv.porthole.test", "old.porthole.test", "both.porthole.test"} {
		v, err := c.Version(context.Background(), name)
		if err != nil || v.Server.Name != "Porthole" {
			t.Errorf("%s: %+v %v", name, v, err)
		}
	}
	// No SRV record and no address: the lookup of name:8448 fails.
	if _, err := c.Version(context.Background(), "none.porthole.test"); err == nil {
		t.Error("a name without records resolved")
	}
}

// .well-known delegation, fetched once and cached: the delegated name's certificate is
// checked, and the well-known server itself must have a valid one.
func TestResolveWellKnown(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	var hits atomic.Int64
	var mu sync.Mutex
	delegate := "127.0.0.1:" + fmt.Sprint(portOf(t, s.FedURL))
	wk := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, `{"m.server": %q}`, delegate)
	}))
	cert, _, _ := s.CA.Issue(t)
	wk.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	wk.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusting client's handshake fails, as it should
	wk.StartTLS()
	t.Cleanup(wk.Close)
	// Every name's port 443 is the well-known server (tests cannot listen on 443).
	dialAddress := func(addr string) string {
		if strings.HasSuffix(addr, ":443") {
			return wk.Listener.Addr().String()
		}
		return addr
	}
	dns := startDNS(t, map[string]string{"wk.porthole.test.": "127.0.0.1"}, nil)
	c := testClient(t, s.CA, dns.resolver(), dialAddress)
	for i := 0; i < 3; i++ {
		if v, err := c.Version(context.Background(), "wk.porthole.test"); err != nil || v.Server.Name != "Porthole" {
			t.Fatalf("request %d through .well-known: %+v %v", i, v, err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf(".well-known fetched %d times, want once (cached)", n)
	}
	// A client that does not trust the well-known server's certificate skips it and falls
	// back on port 8448 of the name itself, where nothing listens.
	other := hstest.NewCA(t)
	c2 := testClient(t, other, dns.resolver(), dialAddress)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c2.Version(ctx, "wk.porthole.test"); err == nil {
		t.Fatal("resolved through an untrusted .well-known")
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf(".well-known answered over an untrusted connection (%d hits)", n)
	}
}

// Names resolved to private addresses are refused at dial time when they are not
// allowed, whichever step of the resolution named them.
func TestResolvedPrivateAddressRefused(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	dns := startDNS(t, map[string]string{"fed.porthole.test.": "127.0.0.1"}, map[string]dnsmessage.SRVResource{
		"_matrix-fed._tcp.srv.porthole.test.": {Priority: 10, Weight: 1, Port: portOf(t, s.FedURL), Target: dnsmessage.MustNewName("fed.porthole.test.")},
	})
	c, err := federation.NewClient(federation.ClientConfig{ServerName: "tester.porthole.test", Key: mfed.GenerateSigningKey(),
		TrustPEM: mustRead(t, s.CA.BundleFile), DNS: dns.resolver()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Version(context.Background(), "srv.porthole.test")
	if !errors.Is(err, netguard.ErrForbiddenAddress) {
		t.Fatalf("SRV target on loopback: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
