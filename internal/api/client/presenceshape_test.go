package client_test

import (
	"net/url"
	"testing"

	"github.com/tidwall/gjson"

	"porthole/internal/hstest"
)

func presenceOf(events gjson.Result, userID string) gjson.Result {
	for _, e := range events.Array() {
		if e.Get("type").String() == "m.presence" && e.Get("sender").String() == userID {
			return e
		}
	}
	return gjson.Result{}
}

// A new user sees their own presence in /initialSync before ever syncing (sytest SYT-34),
// with presence and last_active_ago, and an optional field without a value is left out,
// never null (matrix-nio drops an m.presence event with a null status_msg).
func TestPresenceShape(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	own := presenceOf(u.Must(t, 200, "GET", "initialSync", nil).Get("presence"), u.UserID)
	if !own.Exists() || own.Get("content.presence").String() == "" || !own.Get("content.last_active_ago").Exists() {
		t.Fatalf("no own presence with presence and last_active_ago in a new user's initialSync: %s", own)
	}
	if own.Get("content.status_msg").Exists() {
		t.Fatalf("status_msg without a message: %s", own)
	}

	// Set with a message, then without: the message is gone, not null, everywhere.
	other := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	other.Join(t, room)
	status := "presence/" + url.PathEscape(u.UserID) + "/status"
	u.Must(t, 200, "PUT", status, map[string]any{"presence": "online", "status_msg": "here"})
	if r := other.Must(t, 200, "GET", status, nil); r.Get("status_msg").String() != "here" {
		t.Fatalf("GET presence: %s", r)
	}
	u.Must(t, 200, "PUT", status, map[string]any{"presence": "unavailable"})
	for name, events := range map[string]gjson.Result{
		"sync":             other.Must(t, 200, "GET", "sync?timeout=0", nil).Get("presence.events"),
		"initialSync":      other.Must(t, 200, "GET", "initialSync", nil).Get("presence"),
		"room initialSync": other.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil).Get("presence"),
	} {
		p := presenceOf(events, u.UserID)
		if p.Get("content.presence").String() != "unavailable" || p.Get("content.status_msg").Exists() {
			t.Errorf("%s: presence after clearing the message: %s", name, p)
		}
	}
	if r := other.Must(t, 200, "GET", status, nil); r.Get("presence").String() != "unavailable" || r.Get("status_msg").Type == gjson.String {
		t.Fatalf("GET presence after clearing the message: %s", r)
	}
}
