package client_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/tidwall/gjson"

	"porthole/internal/hstest"
)

func joinedRoom(r hstest.Response, roomID string) gjson.Result {
	return r.Get("rooms.join." + escapeKey(roomID))
}

func timelineBodies(room gjson.Result) []string {
	var out []string
	for _, e := range room.Get("timeline.events").Array() {
		if e.Get("type").String() == "m.room.message" {
			out = append(out, e.Get("content.body").String())
		}
	}
	return out
}

func TestSyncInitialAndIncremental(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "Sync room"})
	bob.Join(t, room)
	for i := 0; i < 12; i++ {
		alice.Send(t, room, "early")
	}
	r := bob.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(`{"room":{"timeline":{"limit":5}}}`), nil)
	jr := joinedRoom(r, room)
	if n := len(jr.Get("timeline.events").Array()); n != 5 || !jr.Get("timeline.limited").Bool() || jr.Get("timeline.prev_batch").String() == "" {
		t.Fatalf("initial timeline: %s", jr.Raw)
	}
	hasName := false
	for _, e := range jr.Get("state.events").Array() {
		if e.Get("type").String() == "m.room.name" {
			hasName = true
		}
	}
	if !hasName {
		t.Fatalf("initial state lacks m.room.name: %s", jr.Get("state").Raw)
	}
	// prev_batch continues backwards without overlap.
	prev := bob.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=3&from="+jr.Get("timeline.prev_batch").String(), nil)
	if got := bodies(prev, "chunk"); len(got) != 3 {
		t.Fatalf("prev_batch page: %v", got)
	}
	since := r.Get("next_batch").String()
	// Nothing new: an incremental sync with timeout 0 has no rooms.
	empty := bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	if joinedRoom(empty, room).Exists() {
		t.Fatalf("unchanged room in incremental sync: %s", empty)
	}
	alice.Send(t, room, "new")
	inc := bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	if got := timelineBodies(joinedRoom(inc, room)); len(got) != 1 || got[0] != "new" {
		t.Fatalf("incremental: %s", inc)
	}
	if joinedRoom(inc, room).Get("timeline.limited").Bool() {
		t.Error("incremental with one event must not be limited")
	}
	if joinedRoom(inc, room).Get("unread_notifications.notification_count").Int() == 0 {
		t.Error("unread count missing")
	}
	// full_state gives the state again.
	fs := bob.Must(t, 200, "GET", "sync?timeout=0&full_state=true&since="+since, nil)
	if len(joinedRoom(fs, room).Get("state.events").Array()) == 0 {
		t.Fatalf("full_state: %s", fs)
	}
	bob.MustErr(t, 400, "M_UNKNOWN", "GET", "sync?since=nonsense", nil)
	bob.MustErr(t, 400, "M_INVALID_PARAM", "GET", "sync?timeout=soon", nil)
}

func TestSyncLongPollWokenBySend(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	since := bob.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	done := make(chan hstest.Response, 1)
	go func() { done <- bob.Do(t, "GET", "sync?timeout=30000&since="+since, nil) }()
	s.WaitParked(t, 1)
	alice.Send(t, room, "wake up")
	r := <-done
	if r.Status != 200 {
		t.Fatalf("long-poll: %s", r)
	}
	if got := timelineBodies(joinedRoom(r, room)); len(got) != 1 || got[0] != "wake up" {
		t.Fatalf("woken sync: %s", r)
	}
}

func TestSyncInviteLeaveAndEphemeral(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "private_chat", "name": "Secret"})
	since := bob.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	alice.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": bob.UserID})
	r := bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	inv := r.Get("rooms.invite." + escapeKey(room) + ".invite_state.events")
	var sawName, sawInvite bool
	for _, e := range inv.Array() {
		sawName = sawName || e.Get("type").String() == "m.room.name"
		sawInvite = sawInvite || (e.Get("type").String() == "m.room.member" && e.Get("content.membership").String() == "invite")
	}
	if !sawName || !sawInvite {
		t.Fatalf("invite_state: %s", inv.Raw)
	}
	since = r.Get("next_batch").String()
	bob.Join(t, room)
	r = bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	if !joinedRoom(r, room).Exists() || len(joinedRoom(r, room).Get("state.events").Array()) == 0 && len(joinedRoom(r, room).Get("timeline.events").Array()) < 3 {
		t.Fatalf("newly joined room: %s", r)
	}
	since = r.Get("next_batch").String()

	// Typing, receipts and presence reach the other member.
	msg := alice.Send(t, room, "read me")
	alice.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(alice.UserID), map[string]any{"typing": true, "timeout": 10000})
	alice.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read/"+url.PathEscape(msg), map[string]any{})
	alice.Must(t, 200, "PUT", "presence/"+url.PathEscape(alice.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "lunch"})
	r = bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	var typing, receipt bool
	for _, e := range joinedRoom(r, room).Get("ephemeral.events").Array() {
		switch e.Get("type").String() {
		case "m.typing":
			typing = e.Get("content.user_ids.0").String() == alice.UserID
		case "m.receipt":
			receipt = receipt || e.Get("content."+escapeKey(msg)+".m\\.read."+escapeKey(alice.UserID)+".ts").Exists()
		}
	}
	if !typing || !receipt {
		t.Fatalf("ephemeral: %s", joinedRoom(r, room).Get("ephemeral").Raw)
	}
	var presence bool
	for _, e := range r.Get("presence.events").Array() {
		if e.Get("sender").String() == alice.UserID && e.Get("content.presence").String() == "unavailable" && e.Get("content.status_msg").String() == "lunch" {
			presence = true
		}
	}
	if !presence {
		t.Fatalf("presence: %s", r.Get("presence").Raw)
	}
	since = r.Get("next_batch").String()
	// Stopping typing is delivered too; private receipts stay private.
	alice.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(alice.UserID), map[string]any{"typing": false})
	alice.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read.private/"+url.PathEscape(msg), map[string]any{})
	r = bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	for _, e := range joinedRoom(r, room).Get("ephemeral.events").Array() {
		if e.Get("type").String() == "m.typing" && len(e.Get("content.user_ids").Array()) != 0 {
			t.Fatalf("typing did not stop: %s", e.Raw)
		}
		if e.Get("type").String() == "m.receipt" {
			t.Fatalf("another user's private receipt leaked: %s", e.Raw)
		}
	}
	since = r.Get("next_batch").String()

	// Leaving shows the room under leave, with the leave event.
	bob.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	r = bob.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	left := r.Get("rooms.leave." + escapeKey(room))
	events := left.Get("timeline.events").Array()
	if len(events) == 0 || events[len(events)-1].Get("content.membership").String() != "leave" {
		t.Fatalf("leave section: %s", r)
	}
	// Account data and tags.
	alice.Must(t, 200, "PUT", "user/"+url.PathEscape(alice.UserID)+"/account_data/com.example.setting", map[string]any{"on": true})
	if alice.Must(t, 200, "GET", "user/"+url.PathEscape(alice.UserID)+"/account_data/com.example.setting", nil).Get("on").Bool() != true {
		t.Fatal("account data round trip")
	}
	alice.Must(t, 200, "PUT", "user/"+url.PathEscape(alice.UserID)+"/rooms/"+url.PathEscape(room)+"/tags/u.work", map[string]any{"order": 0.5})
	tags := alice.Must(t, 200, "GET", "user/"+url.PathEscape(alice.UserID)+"/rooms/"+url.PathEscape(room)+"/tags", nil)
	if !tags.Get("tags.u\\.work").Exists() {
		t.Fatalf("tags: %s", tags)
	}
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", "user/"+url.PathEscape(alice.UserID)+"/account_data/com.example.setting", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "user/"+url.PathEscape(alice.UserID)+"/account_data/com.example.none", nil)
}

func TestSyncLongPollClientLeaves(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	since := u.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		u.DoCtx(ctx, t, "GET", "sync?timeout=60000&since="+since, nil)
		close(done)
	}()
	s.WaitParked(t, 1)
	cancel()
	<-done
	// The server lets go of the waiter (nothing stays parked).
	s.WaitUnparked(t)
}

func TestFilters(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	id := u.Must(t, 200, "POST", "user/"+url.PathEscape(u.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 2}}}).Get("filter_id").String()
	got := u.Must(t, 200, "GET", "user/"+url.PathEscape(u.UserID)+"/filter/"+id, nil)
	if got.Get("room.timeline.limit").Int() != 2 {
		t.Fatalf("stored filter: %s", got)
	}
	room := u.CreateRoom(t, nil)
	for i := 0; i < 4; i++ {
		u.Send(t, room, "x")
	}
	r := u.Must(t, 200, "GET", "sync?filter="+id, nil)
	if n := len(joinedRoom(r, room).Get("timeline.events").Array()); n != 2 {
		t.Fatalf("stored filter limit not applied: %d", n)
	}
	u.MustErr(t, 400, "M_BAD_JSON", "POST", "user/"+url.PathEscape(u.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": "two"}}})
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", "sync?filter=999", nil)
	// A negative or non-numeric timeout is refused, as Synapse's parse_integer does.
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", "sync?timeout=-1", nil)
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", "sync?timeout=soon", nil)
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", "sync?timeout=", nil)
	// Room and sender lists hold room and user IDs (sytest 80torture/10filters.pl).
	u.MustErr(t, 400, "M_BAD_JSON", "POST", "user/"+url.PathEscape(u.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"rooms": []string{"not_a_room_id"}}}})
	u.MustErr(t, 400, "M_BAD_JSON", "GET", "sync?filter="+url.QueryEscape(`{"room":{"state":{"senders":["nobody"]}}}`), nil)
	u.MustErr(t, 404, "M_NOT_FOUND", "GET", "user/"+url.PathEscape(u.UserID)+"/filter/999", nil)
	u.MustErr(t, 403, "M_FORBIDDEN", "POST", "user/"+url.PathEscape("@other:localhost")+"/filter", map[string]any{})
	g := s.Guest(t)
	g.MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "POST", "user/"+url.PathEscape(g.UserID)+"/filter", map[string]any{})
	// A guest syncs with an inline filter.
	g.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(`{}`), nil)
}
