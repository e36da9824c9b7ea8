package federation_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	mfed "maunium.net/go/mautrix/federation"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// A signed request from one Porthole to another is accepted: the receiver fetches the
// sender's key and checks the signature.
func TestSignedRequestAccepted(t *testing.T) {
	servers := hstest.NewFederation(t, 2)
	a, b := servers[0], servers[1]
	alice := b.Register(t, "alice")
	var resp struct {
		DisplayName string `json:"displayname"`
	}
	_, _, err := a.Server.FederationClient().MakeFullRequest(context.Background(), mfed.RequestParams{ServerName: b.Name, Method: "GET",
		Path: mfed.URLPath{"v1", "query", "profile"}, Query: url.Values{"user_id": {alice.UserID}}, Authenticate: true, ResponseJSON: &resp})
	if err != nil || resp.DisplayName != "alice" {
		t.Fatalf("signed request A→B: %+v %v", resp, err)
	}
}

// Requests that are not signed, signed wrongly or for another server are refused.
func TestBadRequestsRefused(t *testing.T) {
	s := hstest.NewFederation(t, 1, func(c *config.Config) { c.Federation.MaxRequestBody = 80 << 10 })[0]
	s.Register(t, "alice")
	peer := hstest.NewPeer(t, s.CA)
	path := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape("@alice:"+s.Name)
	if r := peer.Do(t, s, "GET", path, nil); r.Status != 200 || r.Get("displayname").String() != "alice" {
		t.Fatalf("signed request from a peer: %s", r)
	}
	forger := mfed.GenerateSigningKey()
	forger.ID = peer.Key.ID
	cases := []struct {
		name   string
		auth   []string
		status int
	}{
		{"unsigned", nil, 401},
		{"not X-Matrix", []string{"Bearer abc"}, 401},
		{"forged", []string{hstest.Authorization(peer.Name, forger, s.Name, "GET", path, nil)}, 401},
		{"another destination", []string{hstest.Authorization(peer.Name, peer.Key, "elsewhere.example", "GET", path, nil)}, 401},
		{"another path", []string{hstest.Authorization(peer.Name, peer.Key, s.Name, "GET", path+"&field=displayname", nil)}, 401},
		{"unknown key", []string{strings.Replace(hstest.Authorization(peer.Name, peer.Key, s.Name, "GET", path, nil), string(peer.Key.ID), "ed25519:nope", 1)}, 401},
		{"origin that is not a server name", []string{hstest.Authorization("localhost:http", peer.Key, s.Name, "GET", path, nil)}, 400},
		{"no signature", []string{`X-Matrix origin="` + peer.Name + `",key="` + string(peer.Key.ID) + `"`}, 400},
	}
	for _, c := range cases {
		r := s.FedRaw(t, "GET", path, nil, http.Header{"Authorization": c.auth})
		if r.Status != c.status || r.Get("errcode").String() != "M_UNAUTHORIZED" {
			t.Errorf("%s: %s, want %d M_UNAUTHORIZED", c.name, r, c.status)
		}
	}
	// Bodies: too large, not JSON, not an object.
	big := []byte(`{"server_keys":{},"pad":"` + strings.Repeat("x", 100<<10) + `"}`)
	if r := s.FedRaw(t, "POST", "/_matrix/key/v2/query", big, nil); r.Status != 413 || r.Get("errcode").String() != "M_TOO_LARGE" {
		t.Errorf("oversized body: %s", r)
	}
	if r := s.FedRaw(t, "POST", "/_matrix/key/v2/query", []byte(`{"server_keys":`), nil); r.Status != 400 || r.Get("errcode").String() != "M_NOT_JSON" {
		t.Errorf("malformed JSON: %s", r)
	}
	if r := s.FedRaw(t, "POST", "/_matrix/key/v2/query", []byte(`[]`), nil); r.Status != 400 || r.Get("errcode").String() != "M_BAD_JSON" {
		t.Errorf("JSON that is not an object: %s", r)
	}
	if r := s.FedRaw(t, "POST", "/_matrix/key/v2/query", []byte(`{"server_keys":[]}`), nil); r.Status != 400 || r.Get("errcode").String() != "M_BAD_JSON" {
		t.Errorf("wrong shape: %s", r)
	}
	// The peer's key was fetched once, however many requests it signed.
	if n := peer.KeyFetches(); n != 1 {
		t.Errorf("peer key fetched %d times", n)
	}
}

// One origin sending too much is rate-limited; the others are not.
func TestOriginRateLimited(t *testing.T) {
	s := hstest.NewFederation(t, 1, func(c *config.Config) {
		c.RateLimit = "on"
		c.Federation.RequestsPerSec, c.Federation.RequestsBurst = 0.01, 5
	})[0]
	s.Register(t, "alice")
	flooder, other := hstest.NewPeer(t, s.CA), hstest.NewPeer(t, s.CA)
	path := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape("@alice:"+s.Name)
	limited := 0
	for i := 0; i < 20; i++ {
		r := flooder.Do(t, s, "GET", path, nil)
		if r.Status == 429 && r.Get("errcode").String() == "M_LIMIT_EXCEEDED" && r.Get("retry_after_ms").Int() > 0 {
			limited++
		} else if r.Status != 200 {
			t.Fatalf("flood request: %s", r)
		}
	}
	if limited != 15 {
		t.Fatalf("%d of 20 requests limited, want 15", limited)
	}
	if r := other.Do(t, s, "GET", path, nil); r.Status != 200 {
		t.Fatalf("another origin: %s", r)
	}
}
