package client_test

import (
	"slices"
	"testing"

	"porthole/internal/hstest"
)

// crossSigning is a user's three cross-signing keys.
type crossSigning struct {
	master, self, user hstest.KeyPair
}

func newCrossSigning() crossSigning {
	return crossSigning{hstest.NewKeyPair(), hstest.NewKeyPair(), hstest.NewKeyPair()}
}

// body is the device_signing/upload body with all three keys, signed as a client would.
func (cs crossSigning) body(t *testing.T, userID string) map[string]any {
	return map[string]any{
		"master_key":       hstest.CrossSigningKey(userID, "master", cs.master.Pub),
		"self_signing_key": cs.master.Sign(t, hstest.CrossSigningKey(userID, "self_signing", cs.self.Pub), userID, cs.master.Pub),
		"user_signing_key": cs.master.Sign(t, hstest.CrossSigningKey(userID, "user_signing", cs.user.Pub), userID, cs.master.Pub),
	}
}

func passwordAuth(userID, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": userID}, "password": password}
}

func TestCrossSigningUpload(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	bobSince := syncFrom(t, bob, "").Get("next_batch").String()

	// The first upload needs no password; bob, who shares a room, is told.
	cs := newCrossSigning()
	alice.Must(t, 200, "POST", "keys/device_signing/upload", cs.body(t, alice.UserID))
	r := syncFrom(t, bob, bobSince)
	if !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob not told of alice's keys: %s", r.Get("device_lists").Raw)
	}
	bobSince = r.Get("next_batch").String()
	// The same keys again need no password either (a lost answer retried).
	alice.Must(t, 200, "POST", "keys/device_signing/upload", cs.body(t, alice.UserID))

	// Master and self-signing keys for everyone, the user-signing key for alice only.
	mine := alice.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	theirs := bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	u := gjsonKey(alice.UserID)
	if mine.Get("master_keys."+u+".keys.ed25519:"+gjsonKey(cs.master.Pub)).String() != cs.master.Pub ||
		!mine.Get("self_signing_keys."+u+".signatures").Exists() || !mine.Get("user_signing_keys."+u).Exists() {
		t.Fatalf("alice's own query: %s", mine)
	}
	if !theirs.Get("master_keys."+u).Exists() || !theirs.Get("self_signing_keys."+u).Exists() || theirs.Get("user_signing_keys").Raw != "{}" {
		t.Fatalf("bob's query: %s", theirs)
	}
	// The master key comes back as uploaded (no empty signatures added).
	if mine.Get("master_keys." + u + ".signatures").Exists() {
		t.Fatalf("master key changed: %s", mine.Get("master_keys").Raw)
	}

	// Replacing keys needs the password (user-interactive auth), as in Synapse.
	next := newCrossSigning()
	ch := alice.Must(t, 401, "POST", "keys/device_signing/upload", next.body(t, alice.UserID))
	if ch.Get("flows.0.stages.0").String() != "m.login.password" || ch.Get("session").String() == "" {
		t.Fatalf("challenge: %s", ch)
	}
	body := next.body(t, alice.UserID)
	body["auth"] = passwordAuth(alice.UserID, "wrong")
	alice.MustErr(t, 401, "M_FORBIDDEN", "POST", "keys/device_signing/upload", body)
	body["auth"] = passwordAuth(alice.UserID, "pw-alice")
	alice.Must(t, 200, "POST", "keys/device_signing/upload", body)
	mine = alice.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if !mine.Get("master_keys." + u + ".keys.ed25519:" + gjsonKey(next.master.Pub)).Exists() {
		t.Fatalf("master key not replaced: %s", mine.Get("master_keys").Raw)
	}

	// A new user-signing key alone is alice's business: bob is not told.
	usk := hstest.NewKeyPair()
	alice.Must(t, 200, "POST", "keys/device_signing/upload", map[string]any{
		"user_signing_key": next.master.Sign(t, hstest.CrossSigningKey(alice.UserID, "user_signing", usk.Pub), alice.UserID, next.master.Pub),
		"auth":             passwordAuth(alice.UserID, "pw-alice"),
	})
	bobSince = syncFrom(t, bob, bobSince).Get("next_batch").String()
	aliceSince := syncFrom(t, alice, "").Get("next_batch").String()
	usk2 := hstest.NewKeyPair()
	alice.Must(t, 200, "POST", "keys/device_signing/upload", map[string]any{
		"user_signing_key": next.master.Sign(t, hstest.CrossSigningKey(alice.UserID, "user_signing", usk2.Pub), alice.UserID, next.master.Pub),
		"auth":             passwordAuth(alice.UserID, "pw-alice"),
	})
	if r := syncFrom(t, bob, bobSince); slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob told of alice's user-signing key: %s", r.Get("device_lists").Raw)
	}
	if r := syncFrom(t, alice, aliceSince); !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("alice not told of her user-signing key: %s", r.Get("device_lists").Raw)
	}
}

func TestCrossSigningBadInput(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	cs := newCrossSigning()
	up := func(status int, code string, body map[string]any) {
		t.Helper()
		alice.MustErr(t, status, code, "POST", "keys/device_signing/upload", body)
	}
	// No master key to check the others with.
	up(400, "M_MISSING_PARAM", map[string]any{"self_signing_key": cs.master.Sign(t, hstest.CrossSigningKey(alice.UserID, "self_signing", cs.self.Pub), alice.UserID, cs.master.Pub)})
	b := cs.body(t, alice.UserID)
	b["self_signing_key"] = hstest.NewKeyPair().Sign(t, hstest.CrossSigningKey(alice.UserID, "self_signing", cs.self.Pub), alice.UserID, cs.master.Pub)
	up(400, "M_INVALID_SIGNATURE", b)
	b = cs.body(t, alice.UserID)
	b["master_key"] = hstest.CrossSigningKey("@mallory:"+s.Name, "master", cs.master.Pub)
	up(400, "M_INVALID_PARAM", b)
	up(400, "M_INVALID_PARAM", map[string]any{"master_key": hstest.CrossSigningKey(alice.UserID, "self_signing", cs.master.Pub)})
	up(400, "M_INVALID_PARAM", map[string]any{"master_key": map[string]any{"user_id": alice.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:abc": "abc"}}})
	up(400, "M_BAD_JSON", map[string]any{"master_key": "key"})
	up(400, "M_BAD_JSON", map[string]any{"master_key": map[string]any{"user_id": alice.UserID, "usage": "master", "keys": map[string]string{}}})
	// A key whose ID is one of the user's device IDs.
	pair := hstest.NewKeyPair()
	s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": alice.UserID},
		"password": "pw-alice", "device_id": pair.Pub})
	up(403, "M_FORBIDDEN", map[string]any{"master_key": hstest.CrossSigningKey(alice.UserID, "master", pair.Pub)})
	// None of it stored anything.
	q := alice.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if q.Get("master_keys").Raw != "{}" || q.Get("self_signing_keys").Raw != "{}" {
		t.Fatalf("refused uploads stored keys: %s", q)
	}
	// Guests cannot set up cross-signing.
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "POST", "keys/device_signing/upload", cs.body(t, alice.UserID))
}

func TestSignaturesUpload(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	carol := s.Register(t, "carol")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	carol.Join(t, room)
	aliceKey := alice.UploadKeys(t, 0)
	acs, bcs := newCrossSigning(), newCrossSigning()
	alice.Must(t, 200, "POST", "keys/device_signing/upload", acs.body(t, alice.UserID))
	bob.Must(t, 200, "POST", "keys/device_signing/upload", bcs.body(t, bob.UserID))
	u := gjsonKey(alice.UserID)
	stored := alice.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	device := stored.Get("device_keys." + u + "." + alice.DeviceID).Value().(map[string]any)
	delete(device, "unsigned")
	master := stored.Get("master_keys." + u).Value().(map[string]any)
	bobSince := syncFrom(t, bob, "").Get("next_batch").String()

	// Alice's self-signing key signs her device; her device signs her master key.
	signedDevice := acs.self.Sign(t, clone(device), alice.UserID, acs.self.Pub)
	signedMaster := aliceKey.Sign(t, clone(master), alice.UserID, alice.DeviceID)
	r := alice.Must(t, 200, "POST", "keys/signatures/upload", map[string]any{alice.UserID: map[string]any{alice.DeviceID: signedDevice, acs.master.Pub: signedMaster}})
	if r.Get("failures").Raw != "{}" {
		t.Fatalf("failures: %s", r)
	}
	if r := syncFrom(t, bob, bobSince); !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob not told of alice's signatures: %s", r.Get("device_lists").Raw)
	}
	q := carol.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	sigs := q.Get("device_keys." + u + "." + alice.DeviceID + ".signatures." + u)
	if !sigs.Get("ed25519:"+alice.DeviceID).Exists() || !sigs.Get("ed25519:"+gjsonKey(acs.self.Pub)).Exists() {
		t.Fatalf("device signatures: %s", q)
	}
	if !q.Get("master_keys." + u + ".signatures." + u + ".ed25519:" + alice.DeviceID).Exists() {
		t.Fatalf("master key signature: %s", q.Get("master_keys").Raw)
	}

	// Bob's user-signing key signs alice's master key: bob sees the signature, and alice
	// appears in his changed list only; alice and carol do not see it.
	aliceSince := syncFrom(t, alice, "").Get("next_batch").String()
	bobSince = syncFrom(t, bob, "").Get("next_batch").String()
	bySigned := bcs.user.Sign(t, clone(master), bob.UserID, bcs.user.Pub)
	r = bob.Must(t, 200, "POST", "keys/signatures/upload", map[string]any{alice.UserID: map[string]any{acs.master.Pub: bySigned}})
	if r.Get("failures").Raw != "{}" {
		t.Fatalf("failures: %s", r)
	}
	if r := syncFrom(t, bob, bobSince); !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob not told of his signature: %s", r.Get("device_lists").Raw)
	}
	if r := syncFrom(t, alice, aliceSince); slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("alice told of bob's signature: %s", r.Get("device_lists").Raw)
	}
	bobView := bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if !bobView.Get("master_keys." + u + ".signatures." + gjsonKey(bob.UserID)).Exists() {
		t.Fatalf("bob's view of alice's master key: %s", bobView.Get("master_keys").Raw)
	}
	for _, c := range []*hstest.Client{alice, carol} {
		view := c.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
		if view.Get("master_keys." + u + ".signatures." + gjsonKey(bob.UserID)).Exists() {
			t.Fatalf("%s sees bob's signature: %s", c.UserID, view.Get("master_keys").Raw)
		}
	}

	// Bad signatures and unknown keys are failures in the spec's shape; nothing is stored.
	forged := hstest.NewKeyPair().Sign(t, clone(device), alice.UserID, acs.self.Pub)
	changed := acs.self.Sign(t, func() map[string]any { d := clone(device); d["algorithms"] = []string{"x"}; return d }(), alice.UserID, acs.self.Pub)
	r = alice.Must(t, 200, "POST", "keys/signatures/upload", map[string]any{
		alice.UserID: map[string]any{alice.DeviceID: forged, "NOSUCHDEVICE": signedDevice, "X": changed},
		bob.UserID:   map[string]any{bcs.master.Pub: acs.user.Sign(t, map[string]any{"user_id": bob.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:x": "x"}}, alice.UserID, acs.user.Pub)},
		carol.UserID: map[string]any{"anything": map[string]any{}},
	})
	if r.Get("failures."+u+"."+alice.DeviceID+".errcode").String() != "M_INVALID_SIGNATURE" ||
		r.Get("failures."+u+".NOSUCHDEVICE.errcode").String() != "M_NOT_FOUND" ||
		!r.Get("failures."+u+".NOSUCHDEVICE.error").Exists() ||
		r.Get("failures."+gjsonKey(bob.UserID)+"."+gjsonKey(bcs.master.Pub)+".errcode").String() != "M_INVALID_SIGNATURE" ||
		r.Get("failures."+gjsonKey(carol.UserID)+".anything.errcode").String() != "M_NOT_FOUND" {
		t.Fatalf("failures: %s", r)
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/signatures/upload", map[string]any{alice.UserID: map[string]any{alice.DeviceID: "not an object"}})
	alice.MustErr(t, 400, "M_BAD_JSON", "POST", "keys/signatures/upload", map[string]any{alice.UserID: []string{}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "keys/signatures/upload", map[string]any{"alice": map[string]any{}})
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = clone(sub)
		}
		out[k] = v
	}
	return out
}
