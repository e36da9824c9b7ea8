package main

import (
	"encoding/json"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

// The federation flags start the federation listener over TLS.
func TestFederationFlags(t *testing.T) {
	ca := hstest.NewCA(t)
	_, cert, key := ca.Issue(t)
	fedAddr := freeAddr(t)
	p := startServer(t, t.TempDir(), "--server-name", fedAddr, "--federation-listen", fedAddr, "--federation-tls-cert", cert,
		"--federation-tls-key", key, "--federation-trust", ca.BundleFile, "--federation-allow-private", "on")
	resp, err := ca.Client().Get("https://" + fedAddr + "/_matrix/key/v2/server")
	if err != nil {
		t.Fatalf("federation listener: %v\n%s", err, p.out)
	}
	defer resp.Body.Close()
	var body struct {
		ServerName string `json:"server_name"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.ServerName != fedAddr {
		t.Fatalf("key response: %+v %v", body, err)
	}
	// A flag with a bad value is refused before anything starts.
	var out strings.Builder
	err = run([]string{"--federation-allow-private", "maybe", "--data", t.TempDir()}, strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "allow_private_addresses") {
		t.Fatalf("bad flag value: %v", err)
	}
}
