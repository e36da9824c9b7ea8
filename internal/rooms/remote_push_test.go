package rooms_test

import (
	"testing"

	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
	"porthole/internal/rooms"
)

// Remote events notify local members through their push rules like local ones; a
// soft-failed event notifies nobody.
func TestRemoteEventsNotifyLocalMembers(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	rs := newRemote(t, s)
	bob := "@bob:" + rs.name
	head := lastEvent(t, alice, room)
	state := roomState(t, alice, room)
	join, joinID := rs.event(room, []id.EventID{head.id}, head.depth+1, state, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	if got := rs.persist(room, join, joinID); got != rooms.Accepted {
		t.Fatalf("remote join: %s", got)
	}
	state = roomState(t, alice, room)
	msg, msgID := rs.event(room, []id.EventID{joinID}, head.depth+2, state, bob, "m.room.message", nil,
		map[string]any{"msgtype": "m.text", "body": "hi", "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
	if got := rs.persist(room, msg, msgID); got != rooms.Accepted {
		t.Fatalf("remote message: %s", got)
	}
	counts := func() (int64, int64) {
		r := alice.Must(t, 200, "GET", "sync", nil)
		u := r.Get("rooms.join." + gjsonKey(room) + ".unread_notifications")
		return u.Get("notification_count").Int(), u.Get("highlight_count").Int()
	}
	if n, h := counts(); n != 1 || h != 1 {
		t.Fatalf("after a remote mention: notification_count %d, highlight_count %d; want 1, 1", n, h)
	}
	ns := alice.Must(t, 200, "GET", "notifications", nil).Get("notifications")
	if len(ns.Array()) != 1 || ns.Get("0.event.event_id").String() != string(msgID) || !ns.Get("0.actions.#(set_tweak==\"highlight\")").Exists() {
		t.Fatalf("/notifications: %s", ns.Raw)
	}
	// Banned meanwhile, bob's server sends a message built before the ban: soft-failed,
	// counted for nobody.
	alice.Must(t, 200, "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": bob})
	late, lateID := rs.event(room, []id.EventID{msgID}, head.depth+3, state, bob, "m.room.message", nil,
		map[string]any{"msgtype": "m.text", "body": "hi again", "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
	if got := rs.persist(room, late, lateID); got != rooms.SoftFailed {
		t.Fatalf("a message built before the ban: %s", got)
	}
	if n, h := counts(); n != 1 || h != 1 {
		t.Fatalf("after a soft-failed mention: notification_count %d, highlight_count %d; want 1, 1", n, h)
	}
}
