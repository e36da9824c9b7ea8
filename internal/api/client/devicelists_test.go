package client_test

import (
	"slices"
	"testing"
	"time"

	"porthole/internal/hstest"
)

func TestDeviceListsInSync(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	carol := s.Register(t, "carol")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)

	aliceSince := syncFrom(t, alice, "").Get("next_batch").String()
	carolSince := syncFrom(t, carol, "").Get("next_batch").String()
	// (Syncing sets presence, which bob would see: his token comes last.)
	bobSince := syncFrom(t, bob, "").Get("next_batch").String()

	// A key upload wakes the long-poll of a user sharing a room.
	done := longSync(t, bob, bobSince)
	s.WaitParked(t, 1)
	alice.UploadKeys(t, 1)
	r := <-done
	if r.Status != 200 || !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob's sync after alice's upload: %s", r)
	}
	bobSince = r.Get("next_batch").String()
	// Alice sees her own change; carol, who shares no room, does not.
	if r := syncFrom(t, alice, aliceSince); !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("alice's own change: %s", r.Get("device_lists").Raw)
	}
	if r := syncFrom(t, carol, carolSince); len(strs(r, "device_lists.changed")) != 0 {
		t.Fatalf("carol shares no room: %s", r.Get("device_lists").Raw)
	}
	// Nothing new: the next long-poll waits (a device list reported once is not again).
	if r := syncFrom(t, bob, bobSince); r.Get("device_lists.changed").Raw != "[]" || r.Get("device_lists.left").Raw != "[]" {
		t.Fatalf("repeat: %s", r.Get("device_lists").Raw)
	}

	// Users who start sharing a room are in changed, on both sides.
	carolSince = syncFrom(t, carol, "").Get("next_batch").String()
	carol.Join(t, room)
	r = syncFrom(t, bob, bobSince)
	if got := strs(r, "device_lists.changed"); !slices.Contains(got, carol.UserID) {
		t.Fatalf("bob after carol joined: %v", got)
	}
	bobSince = r.Get("next_batch").String()
	r = syncFrom(t, carol, carolSince)
	if got := strs(r, "device_lists.changed"); !slices.Contains(got, alice.UserID) || !slices.Contains(got, bob.UserID) {
		t.Fatalf("carol after joining: %v", got)
	}
	carolSince = r.Get("next_batch").String()

	// A new login, a rename and a deletion are changes too; the deleted device's keys go.
	second := s.Login(t, alice.UserID, "pw-alice")
	second.UploadKeys(t, 2)
	r = syncFrom(t, bob, bobSince)
	if !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob after alice's login: %s", r.Get("device_lists").Raw)
	}
	bobSince = r.Get("next_batch").String()
	q := bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if n := len(q.Get("device_keys." + gjsonKey(alice.UserID)).Map()); n != 2 {
		t.Fatalf("alice's devices: %s", q)
	}
	keysChangesFrom := bobSince
	second.Must(t, 200, "POST", "logout", map[string]any{})
	r = syncFrom(t, bob, bobSince)
	if !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob after alice's logout: %s", r.Get("device_lists").Raw)
	}
	bobSince = r.Get("next_batch").String()
	q = bob.Must(t, 200, "POST", "keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if n := len(q.Get("device_keys." + gjsonKey(alice.UserID)).Map()); n != 1 || q.Get("device_keys."+gjsonKey(alice.UserID)+"."+second.DeviceID).Exists() {
		t.Fatalf("the logged-out device's keys remain: %s", q)
	}
	claim := bob.Must(t, 200, "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{second.DeviceID: "signed_curve25519"}}})
	if claim.Get("one_time_keys").Raw != "{}" {
		t.Fatalf("the logged-out device's one-time keys remain: %s", claim)
	}
	// /keys/changes tells the same from an older token.
	kc := bob.Must(t, 200, "GET", "keys/changes?from="+keysChangesFrom+"&to="+bobSince, nil)
	if !slices.Contains(strs(kc, "changed"), alice.UserID) || kc.Get("left").Raw != "[]" {
		t.Fatalf("keys/changes: %s", kc)
	}

	// Users who stop sharing every room are in left, on both sides.
	carol.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	r = syncFrom(t, bob, bobSince)
	if got := strs(r, "device_lists.left"); !slices.Contains(got, carol.UserID) || slices.Contains(strs(r, "device_lists.changed"), carol.UserID) {
		t.Fatalf("bob after carol left: %s", r.Get("device_lists").Raw)
	}
	r = syncFrom(t, carol, carolSince)
	if got := strs(r, "device_lists.left"); !slices.Contains(got, alice.UserID) || !slices.Contains(got, bob.UserID) {
		t.Fatalf("carol after leaving: %s", r.Get("device_lists").Raw)
	}
	kc = bob.Must(t, 200, "GET", "keys/changes?from="+bobSince, nil)
	if !slices.Contains(strs(kc, "left"), carol.UserID) {
		t.Fatalf("keys/changes after carol left: %s", kc)
	}
	// Someone still sharing another room is not left.
	other := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, other)
	bobSince = syncFrom(t, bob, "").Get("next_batch").String()
	bob.Must(t, 200, "POST", hstest.Room(other)+"/leave", map[string]any{})
	if r := syncFrom(t, bob, bobSince); slices.Contains(strs(r, "device_lists.left"), alice.UserID) {
		t.Fatalf("alice still shares a room with bob: %s", r.Get("device_lists").Raw)
	}
	// An initial sync carries no device lists (the spec's rule).
	if r := syncFrom(t, bob, ""); r.Get("device_lists.changed").Raw != "[]" {
		t.Fatalf("initial sync: %s", r.Get("device_lists").Raw)
	}
}

// TestDeviceListsAcrossNodes checks that a change committed on one node reaches a /sync
// waiting on another (PostgreSQL only).
func TestDeviceListsAcrossNodes(t *testing.T) {
	nodes := hstest.NewCluster(t, 2)
	a, b := nodes[0], nodes[1]
	alice := a.Register(t, "alice")
	bobOnA := a.Register(t, "bob")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bobOnA.Join(t, room)
	bob := &hstest.Client{S: b, UserID: bobOnA.UserID, DeviceID: bobOnA.DeviceID, Token: bobOnA.Token}
	since := syncFrom(t, bob, "").Get("next_batch").String()
	done := longSync(t, bob, since)
	b.WaitParked(t, 1)
	alice.UploadKeys(t, 1)
	if r := <-done; !slices.Contains(strs(r, "device_lists.changed"), alice.UserID) {
		t.Fatalf("bob's sync on the other node: %s", r)
	}
	// A to-device message sent on one node wakes the recipient's /sync on the other.
	since = syncFrom(t, bob, since).Get("next_batch").String()
	done = longSync(t, bob, since)
	b.WaitParked(t, 1)
	alice.Must(t, 200, "PUT", "sendToDevice/m.test/t1", map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}}})
	if r := <-done; r.Get("to_device.events.#").Int() != 1 {
		t.Fatalf("to-device across nodes: %s", r)
	}
	// Key counts are cached per node: a claim on one node reaches the other's cache (by
	// a database notification, so give it a moment).
	bobOnA.UploadKeys(t, 2)
	if got := syncFrom(t, bob, "").Get("device_one_time_keys_count.signed_curve25519").Int(); got != 2 {
		t.Fatalf("count on node B: %d", got)
	}
	alice.Must(t, 200, "POST", "keys/claim", map[string]any{"one_time_keys": map[string]any{bob.UserID: map[string]string{bob.DeviceID: "signed_curve25519"}}})
	deadline := time.Now().Add(10 * time.Second)
	for syncFrom(t, bob, "").Get("device_one_time_keys_count.signed_curve25519").Int() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("node B kept the count from before the claim")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
