package hstest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mfed "maunium.net/go/mautrix/federation"

	"porthole/internal/config"
)

// CA is a certificate authority made for one test: the servers' federation listeners and
// any test TLS server get certificates from it, and every server trusts it (through
// --federation-trust), as a real deployment trusts the public roots.
type CA struct {
	cert       *x509.Certificate
	key        *ecdsa.PrivateKey
	dir        string
	BundleFile string
	Pool       *x509.CertPool
}

// TestNames are names every certificate of the test CA is valid for besides loopback:
// tests resolve them with resolvers of their own.
var TestNames = []string{"localhost", "*.porthole.test", "porthole.test"}

// NewCA makes a test CA and writes its certificate (the trust bundle) to a file.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Porthole test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{cert: cert, key: key, dir: t.TempDir(), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.BundleFile = filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(ca.BundleFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

var serial sync.Mutex
var nextSerial int64 = 1

// Issue makes a server certificate for loopback and TestNames (plus extra names) and
// returns it with the PEM files holding it.
func (ca *CA) Issue(t testing.TB, extra ...string) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	nextSerial++
	n := nextSerial
	serial.Unlock()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "porthole test server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, DNSNames: append(append([]string{}, TestNames...), extra...)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	base := filepath.Join(ca.dir, fmt.Sprintf("server%d", n))
	if err := os.WriteFile(base+".crt", certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".key", keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, base + ".crt", base + ".key"
}

// Client is an HTTPS client that trusts the CA (and nothing else).
func (ca *CA) Client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
}

// NewFederation starts n servers that federate with each other over real TLS on
// loopback: each has its own server name (127.0.0.1:PORT for the even ones, localhost:PORT
// for the odd ones, PORT being its federation listener's), a certificate from one test CA
// that they all trust, and private addresses allowed. mods adjust every configuration.
func NewFederation(t testing.TB, n int, mods ...func(*config.Config)) []*Server {
	t.Helper()
	ca := NewCA(t)
	var out []*Server
	for i := 0; i < n; i++ {
		host := "127.0.0.1"
		if i%2 == 1 {
			host = "localhost"
		}
		out = append(out, StartFederating(t, ca, host, mods...))
	}
	return out
}

// StartFederating starts one federating server named host:PORT with a certificate of ca.
func StartFederating(t testing.TB, ca *CA, host string, mods ...func(*config.Config)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_, certFile, keyFile := ca.Issue(t)
	name := fmt.Sprintf("%s:%d", host, port)
	fed := func(c *config.Config) {
		c.ServerName = name
		c.Federation.Listen = ln.Addr().String()
		c.Federation.TLSCert, c.Federation.TLSKey = certFile, keyFile
		c.Federation.Trust = ca.BundleFile
		c.Federation.AllowPrivateAddresses = "on"
	}
	dir := t.TempDir()
	s := start(t, dir, FreshDatabase(t, dir), append([]func(*config.Config){fed}, mods...)...)
	s.serveFederation(t, ln)
	s.CA = ca
	s.FedURL = "https://" + ln.Addr().String()
	s.restart = func(t testing.TB, more ...func(*config.Config)) *Server {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("listening again on %d: %v", port, err)
		}
		s2 := start(t, dir, s.dsn, append(append([]func(*config.Config){fed}, mods...), more...)...)
		s2.serveFederation(t, ln)
		s2.CA, s2.FedURL, s2.restart = ca, s.FedURL, s.restart
		return s2
	}
	return s
}

func (s *Server) serveFederation(t testing.TB, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Server.ServeFederation(ctx, ln); err != nil {
			t.Errorf("federation listener: %v", err)
		}
	}()
	prev := s.stop
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			prev()
		})
	}
	t.Cleanup(s.stop)
}

// Restart stops a federating server and starts it again on the same data directory,
// database and federation address; more adjust the new configuration.
func (s *Server) Restart(t testing.TB, more ...func(*config.Config)) *Server {
	t.Helper()
	if s.restart == nil {
		t.Fatal("Restart is for servers of NewFederation")
	}
	s.Stop()
	return s.restart(t, more...)
}

// FedRaw sends a request to the server's federation listener as is (headers included),
// with no signature unless the headers carry one, and checks nothing.
func (s *Server) FedRaw(t testing.TB, method, path string, body []byte, header http.Header) Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.FedURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.CA.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: raw}
}

// FedGet is an unsigned GET of a federation endpoint whose answer must be JSON.
func (s *Server) FedGet(t testing.TB, path string) Response {
	t.Helper()
	r := s.FedRaw(t, "GET", path, nil, nil)
	if !json.Valid(r.Body) {
		t.Fatalf("GET %s: answer is not JSON: %s", path, r)
	}
	return r
}

// Peer plays another homeserver in a test: it serves its signing key over TLS on
// loopback (so servers under test can fetch it) and signs requests to them.
type Peer struct {
	Name string
	Key  *mfed.SigningKey
	// Handler, when set, answers the peer's requests other than its keys.
	Handler http.Handler
	ca      *CA
	keyHits atomic.Int64
}

// NewPeer starts a peer named 127.0.0.1:PORT with a certificate of ca.
func NewPeer(t testing.TB, ca *CA) *Peer {
	t.Helper()
	p := &Peer{Key: mfed.GenerateSigningKey(), ca: ca}
	cert, _, _ := ca.Issue(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_matrix/key/v2/server" {
			p.keyHits.Add(1)
			raw, _ := json.Marshal(p.Key.GenerateKeyResponse(p.Name, nil))
			w.Header().Set("Content-Type", "application/json")
			w.Write(raw)
			return
		}
		if p.Handler != nil {
			p.Handler.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	p.Name = ts.Listener.Addr().String()
	return p
}

// KeyFetches counts the requests for the peer's keys.
func (p *Peer) KeyFetches() int64 { return p.keyHits.Load() }

// Authorization is the X-Matrix header value signing a request from the peer with key
// to destination (the spec's request authentication).
func Authorization(origin string, key *mfed.SigningKey, destination, method, uri string, body []byte) string {
	signed := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": destination}
	if len(body) > 0 {
		signed["content"] = json.RawMessage(body)
	}
	sig, err := key.SignJSON(signed)
	if err != nil {
		panic(err)
	}
	return mfed.XMatrixAuth{Origin: origin, Destination: destination, KeyID: key.ID, Signature: sig}.String()
}

// Do sends a request signed by the peer to s's federation listener. body may be nil, a
// []byte (sent as is) or a value (JSON).
func (p *Peer) Do(t testing.TB, s *Server, method, path string, body any) Response {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	h := http.Header{"Authorization": {Authorization(p.Name, p.Key, s.Name, method, path, raw)}}
	if raw != nil {
		h.Set("Content-Type", "application/json")
	}
	return s.FedRaw(t, method, path, raw, h)
}
