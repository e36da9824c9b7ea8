package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"porthole/internal/config"
	"porthole/internal/federation"
	"porthole/internal/hstest"
	"porthole/internal/netguard"
)

// ownKey reads a server's current key from its key endpoint, checking the answer: its
// name, a validity in the future, old_verify_keys present, signed by the key it lists.
func ownKey(t *testing.T, s *hstest.Server) (id.KeyID, id.SigningKey, gjson.Result) {
	t.Helper()
	r := s.FedGet(t, "/_matrix/key/v2/server")
	if r.Status != 200 {
		t.Fatalf("key/v2/server: %s", r)
	}
	body := r.JSON()
	if body.Get("server_name").String() != s.Name || body.Get("valid_until_ts").Int() <= time.Now().UnixMilli() || !body.Get("old_verify_keys").IsObject() {
		t.Fatalf("key response: %s", r)
	}
	keys := body.Get("verify_keys").Map()
	if len(keys) != 1 {
		t.Fatalf("want one current key: %s", r)
	}
	for kid, k := range keys {
		if err := signutil.VerifyJSON(s.Name, id.KeyID(kid), id.SigningKey(k.Get("key").String()), json.RawMessage(r.Body)); err != nil {
			t.Fatalf("key response not signed by its key: %v", err)
		}
		return id.KeyID(kid), id.SigningKey(k.Get("key").String()), body
	}
	panic("unreachable")
}

func TestKeyAndVersionEndpoints(t *testing.T) {
	servers := hstest.NewFederation(t, 2, func(c *config.Config) { c.Federation.WellKnownServer = "matrix.example.org:443" })
	for _, s := range servers {
		ownKey(t, s)
		// The key ID in the path is deprecated and answered the same.
		if r := s.FedGet(t, "/_matrix/key/v2/server/ed25519:whatever"); r.Status != 200 || r.Get("server_name").String() != s.Name {
			t.Fatalf("key/v2/server/{keyId}: %s", r)
		}
		if r := s.FedGet(t, "/_matrix/federation/v1/version"); r.Status != 200 || r.Get("server.name").String() != "Porthole" {
			t.Fatalf("version: %s", r)
		}
		if r := s.FedGet(t, "/.well-known/matrix/server"); r.Status != 200 || r.Get("m\\.server").String() != "matrix.example.org:443" {
			t.Fatalf("well-known: %s", r)
		}
		if r := s.FedGet(t, "/_matrix/federation/v1/nothing"); r.Status != 404 || r.Get("errcode").String() != "M_UNRECOGNIZED" {
			t.Fatalf("unknown path: %s", r)
		}
		if r := s.FedRaw(t, "PUT", "/_matrix/key/v2/server", []byte("{}"), nil); r.Status != 405 {
			t.Fatalf("wrong method: %s", r)
		}
	}
	// Without delegation there is no .well-known.
	plain := hstest.NewFederation(t, 1)[0]
	if r := plain.FedGet(t, "/.well-known/matrix/server"); r.Status != 404 {
		t.Fatalf("well-known without delegation: %s", r)
	}
	// The client listener does not serve federation.
	if r := plain.Anon().Do(t, "GET", "/_matrix/key/v2/server", nil); r.Status != 404 {
		t.Fatalf("keys on the client listener: %s", r)
	}
}

// A fetches B's keys directly; B, with A as its notary, gets C's keys through A when C
// cannot be reached; keys stay in the database across a restart.
func TestKeyFetching(t *testing.T) {
	ctx := context.Background()
	ca := hstest.NewCA(t)
	a := hstest.StartFederating(t, ca, "127.0.0.1")
	c := hstest.StartFederating(t, ca, "localhost")
	aKeyID, aKey, _ := ownKey(t, a)
	b := hstest.StartFederating(t, ca, "127.0.0.1", func(cfg *config.Config) {
		cfg.Federation.TrustedKeyServers = []config.KeyServer{{ServerName: a.Name, VerifyKeys: map[string]string{string(aKeyID): string(aKey)}}}
	})
	bKeyID, bKey, _ := ownKey(t, b)
	cKeyID, cKey, _ := ownKey(t, c)

	got, err := a.Server.KeyRing().Key(ctx, b.Name, bKeyID, time.Now())
	if err != nil || got.Key != string(bKey) || got.ValidUntilTS < time.Now().Add(23*time.Hour).UnixMilli() {
		t.Fatalf("A fetching B's key: %+v %v", got, err)
	}
	// A acts as a notary for C: its answer is C's response, signed by C and by A.
	for _, r := range []hstest.Response{
		a.FedGet(t, "/_matrix/key/v2/query/"+c.Name),
		a.FedGet(t, "/_matrix/key/v2/query/"+c.Name+"/"+string(cKeyID)),
		a.FedRaw(t, "POST", "/_matrix/key/v2/query", []byte(`{"server_keys":{"`+c.Name+`":{"`+string(cKeyID)+`":{"minimum_valid_until_ts":0}}}}`), nil),
	} {
		keys := r.Get("server_keys").Array()
		if r.Status != 200 || len(keys) != 1 || keys[0].Get("server_name").String() != c.Name {
			t.Fatalf("notary answer: %s", r)
		}
		raw := json.RawMessage(keys[0].Raw)
		if signutil.VerifyJSON(c.Name, cKeyID, cKey, raw) != nil || signutil.VerifyJSON(a.Name, aKeyID, aKey, raw) != nil {
			t.Fatalf("notary answer not signed by C and A: %s", keys[0].Raw)
		}
	}
	// A notary query for A itself is A's own response.
	if r := a.FedGet(t, "/_matrix/key/v2/query/"+a.Name); len(r.Get("server_keys").Array()) != 1 || r.Get("server_keys.0.verify_keys").Get(gjsonKey(aKeyID)).String() == "" {
		t.Fatalf("notary answer about itself: %s", r)
	}
	// A server nobody knows: an empty list.
	if r := a.FedGet(t, "/_matrix/key/v2/query/unknown.invalid"); r.Status != 200 || len(r.Get("server_keys").Array()) != 0 {
		t.Fatalf("notary answer about an unknown server: %s", r)
	}

	c.Stop()
	got, err = b.Server.KeyRing().Key(ctx, c.Name, cKeyID, time.Now())
	if err != nil || got.Key != string(cKey) {
		t.Fatalf("B fetching C's key through A: %+v %v", got, err)
	}
	metrics := b.Anon().Do(t, "GET", "/metrics", nil)
	for _, want := range []string{`porthole_federation_key_fetches_total{outcome="error",source="direct"}`, `porthole_federation_key_fetches_total{outcome="ok",source="notary"}`,
		`porthole_federation_outbound_requests_total{outcome="ok"}`} {
		if !strings.Contains(string(metrics.Body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Stored: after a restart with B gone, A still has B's key.
	b.Stop()
	a2 := a.Restart(t)
	if got, err := a2.Server.KeyRing().Key(ctx, b.Name, bKeyID, time.Now()); err != nil || got.Key != string(bKey) {
		t.Fatalf("B's key after A's restart: %+v %v", got, err)
	}
}

func gjsonKey(k id.KeyID) string { return strings.ReplaceAll(string(k), ".", `\.`) }

// A server whose signing key is replaced publishes the old one in old_verify_keys, and
// signs with the new one.
func TestKeyRotation(t *testing.T) {
	servers := hstest.NewFederation(t, 2)
	a, b := servers[0], servers[1]
	oldID, oldKey, _ := ownKey(t, a)
	if err := os.Remove(filepath.Join(a.DataDir, "signing.key")); err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixMilli()
	a2 := a.Restart(t)
	newID, _, body := ownKey(t, a2)
	if newID == oldID {
		t.Fatal("the key did not change")
	}
	old := body.Get("old_verify_keys").Get(gjsonKey(oldID))
	if old.Get("key").String() != string(oldKey) || old.Get("expired_ts").Int() < before || old.Get("expired_ts").Int() > time.Now().UnixMilli() {
		t.Fatalf("old key not published: %s", body.Raw)
	}
	// Another server learns both: the old key verifies what it signed before it expired.
	got, err := b.Server.KeyRing().Key(context.Background(), a2.Name, oldID, time.UnixMilli(before-1000))
	if err != nil || got.Key != string(oldKey) || !got.Expired || got.ValidUntilTS != old.Get("expired_ts").Int() {
		t.Fatalf("old key fetched: %+v %v", got, err)
	}
	// A third restart with the same key changes nothing.
	a3 := a2.Restart(t)
	if id3, _, body3 := ownKey(t, a3); id3 != newID || body3.Get("old_verify_keys").Get(gjsonKey(oldID)).Get("expired_ts").Int() != old.Get("expired_ts").Int() {
		t.Fatalf("keys after a plain restart: %s", body3.Raw)
	}
}

// With private addresses not allowed (the default), a server refuses to connect to
// loopback, whatever the name resolves to.
func TestPrivateAddressesRefused(t *testing.T) {
	ca := hstest.NewCA(t)
	a := hstest.StartFederating(t, ca, "127.0.0.1")
	strict := hstest.StartFederating(t, ca, "localhost", func(c *config.Config) { c.Federation.AllowPrivateAddresses = "off" })
	_, err := strict.Server.FederationClient().Version(context.Background(), a.Name)
	if !errors.Is(err, netguard.ErrForbiddenAddress) || !strings.Contains(err.Error(), "refusing to connect to 127.0.0.1") {
		t.Fatalf("dial to loopback: %v", err)
	}
	aKeyID, _, _ := ownKey(t, a)
	if _, err := strict.Server.KeyRing().Key(context.Background(), a.Name, aKeyID, time.Now()); !errors.Is(err, federation.ErrKeyNotFound) {
		t.Fatalf("key fetch from loopback: %v", err)
	}
	metrics := strict.Anon().Do(t, "GET", "/metrics", nil)
	if !strings.Contains(string(metrics.Body), `porthole_federation_outbound_requests_total{outcome="refused"}`) ||
		strings.Contains(string(metrics.Body), "porthole_federation_refused_addresses_total 0") {
		t.Fatalf("refusals not counted")
	}
}
