package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSampleLoadsAsDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "porthole.yaml")
	if err := os.WriteFile(path, []byte(Sample(Default())), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("the generated config does not load: %v", err)
	}
	want := Default()
	got.TrustedProxies, want.TrustedProxies = nil, nil
	got.TurnURIs, want.TurnURIs = nil, nil
	got.Federation.TrustedKeyServers, want.Federation.TrustedKeyServers = nil, nil
	got.AppServiceConfigFiles, want.AppServiceConfigFiles = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("generated config differs from the defaults:\n%+v\n%+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := Default()
	c.Registration = "maybe"
	c.Guests = "sometimes"
	c.DefaultRoomVer = "13"
	c.Listen = "nowhere"
	c.Pprof = "0.0.0.0:6060"
	c.TrustedProxies = []string{"not-an-ip"}
	c.Web.Path = "/_matrix/web/"
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"registration", "guests", "default_room_version", "listen", "pprof", "trusted_proxies", "web.path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestEnvAndUnknownKeys(t *testing.T) {
	c := Default()
	env := map[string]string{"PORTHOLE_SERVER_NAME": "example.org", "PORTHOLE_LONG_POLL_MAX": "90s", "PORTHOLE_PEEK_WINDOW": "1024",
		"PORTHOLE_RATE_LIMIT_USER_PER_SECOND": "2.5", "PORTHOLE_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1",
		"PORTHOLE_WEB_ENABLED": "off", "PORTHOLE_WEB_PAGES_BURST": "7"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "example.org" || c.LongPollMax.Seconds() != 90 || c.PeekWindow != 1024 || c.UserRequestsPerS != 2.5 || len(c.TrustedProxies) != 2 ||
		c.Web.Enabled != "off" || c.Web.PagesBurst != 7 {
		t.Fatalf("env not applied: %+v", c)
	}
	if err := c.ApplyEnv(func(k string) string {
		if k == "PORTHOLE_PEEK_WINDOW" {
			return "lots"
		}
		return ""
	}); err == nil {
		t.Fatal("bad env value accepted")
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("server_nmae: typo\n"), 0o600)
	if _, err := Load(path); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestFederationSection(t *testing.T) {
	c := Default()
	env := map[string]string{"PORTHOLE_FEDERATION_LISTEN": "127.0.0.1:8448", "PORTHOLE_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "on"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if !c.Federation.Enabled() || c.Federation.AllowPrivateAddresses != "on" {
		t.Fatalf("federation env not applied: %+v", c.Federation)
	}
	path := filepath.Join(t.TempDir(), "fed.yaml")
	os.WriteFile(path, []byte("federation:\n  listen: \"127.0.0.1:8448\"\n  well_known_server: \"matrix.example.org:443\"\n  trusted_key_servers:\n    - server_name: notary.example.org\n      verify_keys:\n        \"ed25519:a\": \"Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw\"\n"), 0o600)
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if got.Federation.Listen != "127.0.0.1:8448" || len(got.Federation.TrustedKeyServers) != 1 || got.Federation.MaxRequestBody != Default().Federation.MaxRequestBody {
		t.Fatalf("federation section not loaded over the defaults: %+v", got.Federation)
	}
	bad := Default()
	bad.Federation = Federation{Listen: "nowhere", TLSCert: "x.pem", WellKnownServer: "a/b", AllowPrivateAddresses: "yes",
		TrustedKeyServers: []KeyServer{{ServerName: "n.example", VerifyKeys: map[string]string{"rsa:1": "AAAA"}}}}
	err = bad.Validate()
	for _, want := range []string{"federation.listen", "tls_cert and tls_key", "well_known_server", "allow_private_addresses", "trusted_key_servers[0]", "max_request_body", "rate_limit_per_second"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}
