package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"porthole/internal/hstest"
)

// syncFrom runs an incremental /sync (since "" for an initial one) that answers at once.
func syncFrom(t *testing.T, c *hstest.Client, since string) hstest.Response {
	t.Helper()
	path := "sync?timeout=0"
	if since != "" {
		path += "&since=" + url.QueryEscape(since)
	}
	return c.Must(t, 200, "GET", path, nil)
}

// longSync starts a /sync long-poll and returns its answer once it comes.
func longSync(t *testing.T, c *hstest.Client, since string) <-chan hstest.Response {
	done := make(chan hstest.Response, 1)
	go func() { done <- c.Do(t, "GET", "sync?timeout=20000&since="+url.QueryEscape(since), nil) }()
	return done
}

func strs(r hstest.Response, path string) []string {
	var out []string
	for _, v := range r.Get(path).Array() {
		out = append(out, v.String())
	}
	return out
}

func TestKeysUploadQueryClaim(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")

	// Before any upload, /sync already reports the counts, as Synapse does.
	first := syncFrom(t, alice, "")
	if first.Get("device_one_time_keys_count.signed_curve25519").Raw != "0" || first.Get("device_unused_fallback_key_types").Raw != "[]" {
		t.Fatalf("key counts before any upload: %s / %s", first.Get("device_one_time_keys_count").Raw, first.Get("device_unused_fallback_key_types").Raw)
	}

	key := hstest.NewKeyPair()
	up := alice.Must(t, 200, "POST", "keys/upload", map[string]any{
		"device_keys":   alice.DeviceKeys(t, key),
		"one_time_keys": alice.OneTimeKeys(t, key, "a", 3),
		"fallback_keys": alice.FallbackKey(t, key, "fb"),
	})
	if up.Get("one_time_key_counts.signed_curve25519").Int() != 3 {
		t.Fatalf("upload counts: %s", up)
	}
	// Later uploads are claimed after earlier ones.
	alice.Must(t, 200, "POST", "keys/upload", map[string]any{"one_time_keys": alice.OneTimeKeys(t, key, "b", 2)})
	st := syncFrom(t, alice, "")
	if st.Get("device_one_time_keys_count.signed_curve25519").Int() != 5 || strings.Join(strs(st, "device_unused_fallback_key_types"), ",") != "signed_curve25519" {
		t.Fatalf("sync counts: %s %s", st.Get("device_one_time_keys_count").Raw, st.Get("device_unused_fallback_key_types").Raw)
	}

	q := bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}, "timeout": 10000})
	dev := q.Get("device_keys." + gjsonKey(alice.UserID) + "." + alice.DeviceID)
	if dev.Get("keys.ed25519:"+alice.DeviceID).String() != key.Pub || !dev.Get("signatures").Exists() || dev.Get("unsigned").Raw != "{}" {
		t.Fatalf("queried device: %s", q)
	}
	for _, f := range []string{"failures", "master_keys", "self_signing_keys", "user_signing_keys"} {
		if q.Get(f).Raw != "{}" {
			t.Fatalf("%s should be an empty object: %s", f, q)
		}
	}
	// The display name comes in unsigned; asking for one device gives just that one.
	alice.Must(t, 200, "PUT", "devices/"+alice.DeviceID, map[string]any{"display_name": "Alice's phone"})
	q = bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{alice.DeviceID, "NOPE"}, bob.UserID: []string{}}})
	if got := q.Get("device_keys." + gjsonKey(alice.UserID) + "." + alice.DeviceID + ".unsigned.device_display_name").String(); got != "Alice's phone" {
		t.Fatalf("display name: %s", q)
	}
	if n := len(q.Get("device_keys." + gjsonKey(alice.UserID)).Map()); n != 1 {
		t.Fatalf("one device asked for, %d answered", n)
	}
	if q.Get("device_keys."+gjsonKey(bob.UserID)).Raw != "{}" {
		t.Fatalf("a user without keys is an empty object: %s", q)
	}

	// Claims hand out the first upload's keys, then the second's, then the fallback key.
	claim := func() hstest.Response {
		return bob.Must(t, 200, "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}}})
	}
	var got []string
	for i := 0; i < 6; i++ {
		for id := range claim().Get("one_time_keys." + gjsonKey(alice.UserID) + "." + alice.DeviceID).Map() {
			got = append(got, id)
		}
	}
	if len(got) != 6 {
		t.Fatalf("claims: %v", got)
	}
	firstUpload, secondUpload := slices.Sorted(slices.Values(got[:3])), slices.Sorted(slices.Values(got[3:5]))
	if strings.Join(firstUpload, ",") != "signed_curve25519:a1,signed_curve25519:a2,signed_curve25519:a3" ||
		strings.Join(secondUpload, ",") != "signed_curve25519:b1,signed_curve25519:b2" || got[5] != "signed_curve25519:fb" {
		t.Fatalf("claim order: %v", got)
	}
	// The fallback key is given again (it is not consumed) and now reported used.
	if _, ok := claim().Get("one_time_keys." + gjsonKey(alice.UserID) + "." + alice.DeviceID).Map()["signed_curve25519:fb"]; !ok {
		t.Fatal("fallback key not given again")
	}
	st = syncFrom(t, alice, "")
	if st.Get("device_one_time_keys_count.signed_curve25519").Int() != 0 || st.Get("device_unused_fallback_key_types").Raw != "[]" {
		t.Fatalf("after claims: %s %s", st.Get("device_one_time_keys_count").Raw, st.Get("device_unused_fallback_key_types").Raw)
	}
	// A new fallback key is unused again.
	alice.Must(t, 200, "POST", "keys/upload", map[string]any{"fallback_keys": alice.FallbackKey(t, key, "fb2")})
	if st = syncFrom(t, alice, ""); strings.Join(strs(st, "device_unused_fallback_key_types"), ",") != "signed_curve25519" {
		t.Fatalf("new fallback key: %s", st.Get("device_unused_fallback_key_types").Raw)
	}

	// Unknown users and devices give nothing; remote users are failures.
	r := bob.Must(t, 200, "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{
		"@nobody:" + s.Name: map[string]string{"X": "signed_curve25519"}, alice.UserID: map[string]string{"NOPE": "signed_curve25519"},
		"@carol:remote.example": map[string]string{"Y": "signed_curve25519"},
	}})
	if r.Get("one_time_keys").Raw != "{}" || !r.Get("failures.remote\\.example").Exists() {
		t.Fatalf("claim of unknown keys: %s", r)
	}
	r = bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{"@carol:remote.example": []string{}}})
	if !r.Get("failures.remote\\.example").IsObject() {
		t.Fatalf("query of a remote user: %s", r)
	}

	// Guests may use the keys endpoints (the spec's guest list).
	guest := s.Guest(t)
	gkey := hstest.NewKeyPair()
	guest.Must(t, 200, "POST", "keys/upload", map[string]any{"device_keys": guest.DeviceKeys(t, gkey)})
	guest.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
}

// gjsonKey escapes a user ID for a gjson path.
func gjsonKey(s string) string {
	r := strings.NewReplacer(".", `\.`, "*", `\*`, "?", `\?`)
	return r.Replace(s)
}

func TestKeysBadInput(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	key := hstest.NewKeyPair()
	good := func() map[string]any { return alice.DeviceKeys(t, key) }
	otk := alice.OneTimeKeys(t, key, "x", 1)

	alice.MustErr(t, 400, "M_NOT_JSON", "POST", "keys/upload", "{nope")
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/upload", `[]`)
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/upload", map[string]any{"device_keys": "keys"})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/upload", map[string]any{"device_keys": map[string]any{"user_id": alice.UserID, "device_id": alice.DeviceID}})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/upload", map[string]any{"one_time_keys": []string{"x"}})
	other := good()
	other["user_id"] = "@mallory:" + s.Name
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"device_keys": other})
	otherDev := good()
	otherDev["device_id"] = "OTHER"
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"device_keys": otherDev})
	// Signed by another key, tampered with after signing, or not signed at all.
	forged := hstest.NewKeyPair().Sign(t, map[string]any{
		"user_id": alice.UserID, "device_id": alice.DeviceID, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{"ed25519:" + alice.DeviceID: key.Pub},
	}, alice.UserID, alice.DeviceID)
	alice.MustErr(t, 400, "M_INVALID_SIGNATURE", "POST", "keys/upload", map[string]any{"device_keys": forged, "one_time_keys": otk})
	tampered := good()
	tampered["algorithms"] = []string{"m.olm.v1.curve25519-aes-sha2"}
	alice.MustErr(t, 400, "M_INVALID_SIGNATURE", "POST", "keys/upload", map[string]any{"device_keys": tampered})
	unsigned := good()
	unsigned["signatures"] = map[string]any{}
	alice.MustErr(t, 400, "M_INVALID_SIGNATURE", "POST", "keys/upload", map[string]any{"device_keys": unsigned})
	noEd := good()
	noEd["keys"] = map[string]string{"curve25519:" + alice.DeviceID: key.Pub}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"device_keys": noEd})
	// Signed one-time keys need the device's keys to check them against.
	alice.MustErr(t, 400, "M_INVALID_SIGNATURE", "POST", "keys/upload", map[string]any{"one_time_keys": otk})
	// None of that stored anything.
	q := alice.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if q.Get("device_keys."+gjsonKey(alice.UserID)).Raw != "{}" {
		t.Fatalf("refused uploads stored keys: %s", q)
	}

	// With the device keys known: a bad one-time key refuses the whole upload.
	alice.Must(t, 200, "POST", "keys/upload", map[string]any{"device_keys": good()})
	badOTK := map[string]any{"signed_curve25519:bad": hstest.NewKeyPair().Sign(t, map[string]any{"key": "k"}, alice.UserID, alice.DeviceID)}
	for k, v := range alice.OneTimeKeys(t, key, "ok", 2) {
		badOTK[k] = v
	}
	alice.MustErr(t, 400, "M_INVALID_SIGNATURE", "POST", "keys/upload", map[string]any{"one_time_keys": badOTK})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"one_time_keys": map[string]any{"nocolon": "k"}})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/upload", map[string]any{"one_time_keys": map[string]any{"alg:id": 5}})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/upload", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:id": map[string]any{"key": "k"}}})
	two := alice.FallbackKey(t, key, "f1")
	for k, v := range alice.FallbackKey(t, key, "f2") {
		two[k] = v
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"fallback_keys": two})
	many := map[string]any{}
	for i := 0; i < 1001; i++ {
		many[fmt.Sprintf("alg:%d", i)] = "k"
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"one_time_keys": many})
	if st := syncFrom(t, alice, ""); st.Get("device_one_time_keys_count").Raw != `{"signed_curve25519":0}` || st.Get("device_unused_fallback_key_types").Raw != "[]" {
		t.Fatalf("refused uploads stored keys: %s", st.Get("device_one_time_keys_count").Raw)
	}
	// The same key again is fine; the same ID with other content is not.
	alice.Must(t, 200, "POST", "keys/upload", map[string]any{"one_time_keys": map[string]any{"alg:same": "k1"}})
	alice.Must(t, 200, "POST", "keys/upload", map[string]any{"one_time_keys": map[string]any{"alg:same": "k1"}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/upload", map[string]any{"one_time_keys": map[string]any{"alg:same": "k2"}})

	// Queries and claims.
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/query", map[string]any{})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: "all"}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/query", map[string]any{"device_keys": map[string]any{"not-a-user": []string{}}})
	users := map[string]any{}
	for i := 0; i < 1001; i++ {
		users[fmt.Sprintf("@u%d:%s", i, s.Name)] = []string{}
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/query", map[string]any{"device_keys": users})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/claim", map[string]any{})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: []string{"x"}}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{"bob": map[string]string{"D": "alg"}}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: ""}}})
	// A failed claim took nothing.
	r := alice.Must(t, 200, "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "alg"}}})
	if r.Get("one_time_keys."+gjsonKey(alice.UserID)+"."+alice.DeviceID+".alg:same").String() != "k1" {
		t.Fatalf("claim after refused ones: %s", r)
	}
	alice.MustErr(t, 400, "M_MISSING_PARAM", "GET", "keys/changes", nil)
	alice.MustErr(t, 400, "M_UNKNOWN", "GET", "keys/changes?from=garbage", nil)
}

// TestKeysClaimConcurrent races claims for one device's keys: each one-time key is handed
// out exactly once, and the claims that find none left get the fallback key.
func TestKeysClaimConcurrent(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	const keys, claims = 20, 60
	alice.UploadKeys(t, keys)
	claimers := make([]*hstest.Client, 6)
	for i := range claimers {
		claimers[i] = s.Register(t, fmt.Sprintf("claimer%d", i))
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < claims; i++ {
		wg.Add(1)
		go func(c *hstest.Client) {
			defer wg.Done()
			r := c.Do(t, "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}}})
			mu.Lock()
			defer mu.Unlock()
			if r.Status != 200 {
				got["status "+fmt.Sprint(r.Status)+" "+string(r.Body)]++
				return
			}
			ids := r.Get("one_time_keys." + gjsonKey(alice.UserID) + "." + alice.DeviceID).Map()
			if len(ids) != 1 {
				got["no key"]++
			}
			for id := range ids {
				got[id]++
			}
		}(claimers[i%len(claimers)])
	}
	wg.Wait()
	for i := 1; i <= keys; i++ {
		if n := got[fmt.Sprintf("signed_curve25519:k%d", i)]; n != 1 {
			t.Fatalf("key k%d handed out %d times: %v", i, n, got)
		}
	}
	if got["signed_curve25519:fb"] != claims-keys || len(got) != keys+1 {
		t.Fatalf("claims beyond the one-time keys: %v", got)
	}
}
