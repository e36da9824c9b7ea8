package client_test

import (
	"fmt"
	"strings"
	"testing"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

func sendToDevice(t *testing.T, c *hstest.Client, txn string, messages map[string]any) hstest.Response {
	t.Helper()
	return c.Must(t, 200, "PUT", "sendToDevice/m.test/"+txn, map[string]any{"messages": messages})
}

func TestToDevice(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	since := syncFrom(t, bob, "").Get("next_batch").String()

	// A message wakes the recipient's long-poll and comes as sender, type and content.
	done := longSync(t, bob, since)
	s.WaitParked(t, 1)
	sendToDevice(t, alice, "t1", map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 1}}})
	r := <-done
	if got := r.Get("to_device.events").Raw; got != `[{"content":{"n":1},"sender":"`+alice.UserID+`","type":"m.test"}]` {
		t.Fatalf("to_device: %s", r)
	}
	// Until the client syncs on from that response, the message is sent again.
	if again := syncFrom(t, bob, since); again.Get("to_device.events").Raw != r.Get("to_device.events").Raw {
		t.Fatalf("retried sync: %s", again.Get("to_device").Raw)
	}
	next := r.Get("next_batch").String()
	if after := syncFrom(t, bob, next); after.Get("to_device.events").Raw != "[]" {
		t.Fatalf("acknowledged message came again: %s", after.Get("to_device").Raw)
	}
	// Once acknowledged it is gone, even for the old token.
	if old := syncFrom(t, bob, since); old.Get("to_device.events").Raw != "[]" {
		t.Fatalf("deleted message came back: %s", old.Get("to_device").Raw)
	}

	// The same transaction ID of the same device sends nothing again.
	sendToDevice(t, alice, "t1", map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"n": 2}}})
	if r := syncFrom(t, bob, next); r.Get("to_device.events").Raw != "[]" {
		t.Fatalf("repeated transaction delivered: %s", r.Get("to_device").Raw)
	}
	// "*" reaches every device of the user; a named device gets its own message instead.
	bob2 := s.Login(t, bob.UserID, "pw-bob")
	since2 := syncFrom(t, bob2, "").Get("next_batch").String()
	next = syncFrom(t, bob, next).Get("next_batch").String()
	sendToDevice(t, alice, "t2", map[string]any{bob.UserID: map[string]any{"*": map[string]any{"all": true}, bob2.DeviceID: map[string]any{"just": "you"}}})
	if r := syncFrom(t, bob, next); r.Get("to_device.events.#").Int() != 1 || !r.Get("to_device.events.0.content.all").Bool() {
		t.Fatalf("bob's first device: %s", r.Get("to_device").Raw)
	}
	if r := syncFrom(t, bob2, since2); r.Get("to_device.events.#").Int() != 1 || r.Get("to_device.events.0.content.just").String() != "you" {
		t.Fatalf("bob's second device: %s", r.Get("to_device").Raw)
	}
	// Unknown devices and users, and remote users, get nothing and fail nothing.
	sendToDevice(t, alice, "t3", map[string]any{
		bob.UserID: map[string]any{"NOSUCHDEVICE": map[string]any{}}, "@nobody:" + s.Name: map[string]any{"*": map[string]any{}},
		"@carol:remote.example": map[string]any{"D": map[string]any{}},
	})
	// A deleted device's inbox goes with it.
	sendToDevice(t, alice, "t4", map[string]any{bob.UserID: map[string]any{bob2.DeviceID: map[string]any{"n": 4}}})
	bob2.Must(t, 200, "POST", "logout", map[string]any{})
	bob3 := s.Login(t, bob.UserID, "pw-bob")
	if r := syncFrom(t, bob3, ""); r.Get("to_device.events").Raw != "[]" {
		t.Fatalf("new device got old messages: %s", r.Get("to_device").Raw)
	}

	// Guests may send.
	s.Guest(t).Must(t, 200, "PUT", "sendToDevice/m.test/g1", map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{}}}})
}

func TestToDeviceBadInput(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	send := func(txn string) string { return "sendToDevice/m.test/" + txn }
	alice.MustErr(t, 400, "M_NOT_JSON", "PUT", send("a"), "{")
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", send("b"), map[string]any{})
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", send("c"), map[string]any{"messages": []string{}})
	alice.MustErr(t, 400, "M_BAD_JSON", "PUT", send("d"), map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: "text"}}})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "PUT", send("e"), map[string]any{"messages": map[string]any{"bob": map[string]any{"D": map[string]any{}}}})
	alice.MustErr(t, 413, "M_TOO_LARGE", "PUT", send("f"), map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"big": strings.Repeat("x", 70<<10)}}}})
	// A refused request stored nothing, not even its transaction ID.
	if r := syncFrom(t, bob, ""); r.Get("to_device.events").Raw != "[]" {
		t.Fatalf("refused messages delivered: %s", r.Get("to_device").Raw)
	}
	sendToDevice(t, alice, "d", map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"ok": true}}})
	if r := syncFrom(t, bob, ""); r.Get("to_device.events.#").Int() != 1 {
		t.Fatalf("the transaction ID of a refused request was spent: %s", r.Get("to_device").Raw)
	}
}

// TestToDeviceInboxLimits checks the per-sync batch (nothing lost across batches) and the
// full-inbox answer.
func TestToDeviceInboxLimits(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.ToDeviceInboxLimit = 150 })
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	bob2 := s.Login(t, bob.UserID, "pw-bob")
	for i := 0; i < 150; i++ {
		sendToDevice(t, alice, fmt.Sprint("m", i), map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"i": i}}})
	}
	// Bob's inbox is full: naming the device is refused; "*" skips it.
	alice.MustErr(t, 429, "M_LIMIT_EXCEEDED", "PUT", "sendToDevice/m.test/full", map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{}}}})
	sendToDevice(t, alice, "all", map[string]any{bob.UserID: map[string]any{"*": map[string]any{"all": true}}})
	if r := syncFrom(t, bob2, ""); r.Get("to_device.events.#").Int() != 1 {
		t.Fatalf("the other device: %s", r.Get("to_device").Raw)
	}
	// A /sync carries 100; the token says how far, and the next one carries the rest.
	first := syncFrom(t, bob, "")
	if first.Get("to_device.events.#").Int() != 100 || first.Get("to_device.events.99.content.i").Int() != 99 {
		t.Fatalf("first batch: %d", first.Get("to_device.events.#").Int())
	}
	second := syncFrom(t, bob, first.Get("next_batch").String())
	if second.Get("to_device.events.#").Int() != 50 || second.Get("to_device.events.0.content.i").Int() != 100 {
		t.Fatalf("second batch: %s", second.Get("to_device").Raw)
	}
	third := syncFrom(t, bob, second.Get("next_batch").String())
	if third.Get("to_device.events").Raw != "[]" {
		t.Fatalf("third batch: %s", third.Get("to_device").Raw)
	}
	// Delivered messages free the inbox.
	sendToDevice(t, alice, "after", map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{}}})
	// The token with a to-device part still works elsewhere (e.g. /keys/changes).
	bob.Must(t, 200, "GET", "keys/changes?from="+first.Get("next_batch").String(), nil)
}
