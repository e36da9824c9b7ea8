package live

import (
	"fmt"
	"testing"
	"time"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

func testRoom(limit int) *Room {
	return &Room{ID: "!r", members: map[string][]Change{}, truncated: map[string]struct{}{}, settingIDs: map[string]string{}, joined: map[string]struct{}{}, invited: map[string]struct{}{},
		names: map[string]memberName{}, unread: newUnreadIndex(), limit: limit, children: childIndex{}}
}

func message(pos stream.Pos, sender string) *Published {
	e := &storage.Event{Pos: pos, ID: fmt.Sprintf("$%d", pos), RoomID: "!r", Type: "m.room.message", Sender: sender,
		PDU: []byte(`{"content":{"body":"x"}}`), Visibility: "world_readable"}
	return &Published{RoomID: "!r", Item: EventItem(e), Event: e}
}

func TestWindow(t *testing.T) {
	r := testRoom(4)
	for p := stream.Pos(1); p <= 6; p++ {
		r.apply(message(p, "@a"))
	}
	if _, ok := r.Items(1, 6); ok {
		t.Fatal("the window kept more than its limit")
	}
	items, ok := r.Items(2, 6)
	if !ok || len(items) != 4 || items[0].Pos != 3 || items[3].Pos != 6 {
		t.Fatalf("items: %v %v", ok, items)
	}
	if items, ok := r.Items(4, 5); !ok || len(items) != 1 || items[0].Pos != 5 {
		t.Fatalf("sub-range: %v", items)
	}
	// Re-publishing an item the window already has changes nothing.
	r.apply(message(5, "@a"))
	if items, _ := r.Items(2, 6); len(items) != 4 {
		t.Fatal("duplicate item appended")
	}
}

func TestMembershipAt(t *testing.T) {
	h := []Change{{Pos: 5, Membership: "invite"}, {Pos: 8, Membership: "join", Prev: "invite"}, {Pos: 12, Membership: "leave", Prev: "join"}}
	cases := map[stream.Pos]string{1: "", 5: "invite", 7: "invite", 8: "join", 10: "join", 12: "join", 13: "leave"}
	for pos, want := range cases {
		if got := MembershipAt(h, pos); got != want {
			t.Errorf("MembershipAt(%d) = %q, want %q", pos, got, want)
		}
	}
}

// pushed is a message with the push outcome the evaluation would attach.
func pushed(pos stream.Pos, sender, thread string, base storage.PushActions, exc ...storage.PushException) *Published {
	p := message(pos, sender)
	p.Push = &storage.PushOutcome{Pos: pos, RoomID: "!r", ThreadID: thread, Sender: sender, Base: base, Exceptions: exc}
	return p
}

var (
	notify    = storage.PushActions{Notify: true, Actions: `["notify"]`}
	highlight = storage.PushActions{Notify: true, Highlight: true, Actions: `["notify",{"set_tweak":"highlight"}]`}
	silent    = storage.PushActions{Actions: "[]"}
)

func TestUnreadIndex(t *testing.T) {
	r := testRoom(100)
	for _, u := range []string{"@a", "@b", "@c"} {
		r.applyState(&storage.Event{Pos: 1, Type: "m.room.member", StateKey: strp(u), Membership: "join"})
	}
	want := func(user string, n, h int) {
		t.Helper()
		u, _, ok := r.Unread(user, false)
		if !ok || u.Total.Notify != n || u.Total.Highlight != h {
			t.Fatalf("%s: %+v %v, want %d notifications, %d highlights", user, u.Total, ok, n, h)
		}
	}
	// 2..11: @a and @b take turns; everyone else is notified.
	for p := stream.Pos(2); p <= 11; p++ {
		sender := "@a"
		if p%2 == 0 {
			sender = "@b"
		}
		r.apply(pushed(p, sender, "", notify))
	}
	want("@a", 5, 0)
	want("@b", 5, 0)
	want("@c", 10, 0)
	// 12: @c is mentioned; @b has the room muted.
	r.apply(pushed(12, "@a", "", notify,
		storage.PushException{UserID: "@b", PushActions: silent},
		storage.PushException{UserID: "@c", PushActions: highlight}))
	want("@b", 5, 0)
	want("@c", 11, 1)
	// A notice nobody is notified of, except @c whose keyword rule matched.
	r.apply(pushed(13, "@a", "", silent, storage.PushException{UserID: "@c", PushActions: notify}))
	want("@c", 12, 1)
	want("@b", 5, 0)
	// A receipt resets the count up to its event.
	r.unread.read("@c", "", 11)
	want("@c", 2, 1)
	// The mention is redacted: it no longer counts.
	r.apply(&Published{RoomID: "!r", Item: Item{Pos: 14}, Replaced: []*storage.Event{{Pos: 12, ID: "$12", RedactedBecause: []byte("{}")}}})
	want("@c", 1, 0)
	want("@a", 5, 0)
	// Someone who joins later counts from their join; a profile change keeps that.
	r.applyState(&storage.Event{Pos: 15, Type: "m.room.member", StateKey: strp("@d"), Membership: "join"})
	r.apply(pushed(16, "@a", "", notify))
	r.applyState(&storage.Event{Pos: 17, Type: "m.room.member", StateKey: strp("@d"), Membership: "join", PrevMembership: "join"})
	want("@d", 1, 0)
	// Not joined: nothing.
	want("@nobody", 0, 0)
}

func TestUnreadThreads(t *testing.T) {
	r := testRoom(100)
	for _, u := range []string{"@a", "@b"} {
		r.applyState(&storage.Event{Pos: 1, Type: "m.room.member", StateKey: strp(u), Membership: "join"})
	}
	r.apply(pushed(2, "@a", "", notify))
	r.apply(pushed(3, "@a", "$root", notify))
	r.apply(pushed(4, "@a", "$root", highlight))
	r.apply(pushed(5, "@a", "", notify))
	r.apply(pushed(6, "@a", "$other", notify))
	u, _, _ := r.Unread("@b", true)
	if u.Total != (Counts{5, 1}) || u.Threads[""] != (Counts{2, 0}) || u.Threads["$root"] != (Counts{2, 1}) || u.Threads["$other"] != (Counts{1, 0}) {
		t.Fatalf("counts: %+v", u)
	}
	// A threaded receipt reads only its thread.
	r.unread.read("@b", "$root", 4)
	u, _, _ = r.Unread("@b", true)
	if u.Total != (Counts{3, 0}) || u.Threads["$root"] != (Counts{}) || u.Threads[""] != (Counts{2, 0}) {
		t.Fatalf("after a threaded receipt: %+v", u)
	}
	// "main" reads the main timeline.
	r.unread.read("@b", MainThread, 5)
	u, _, _ = r.Unread("@b", true)
	if u.Total != (Counts{1, 0}) || len(u.Threads) != 1 || u.Threads["$other"] != (Counts{1, 0}) {
		t.Fatalf("after a main-timeline receipt: %+v", u)
	}
	// An unthreaded receipt reads every thread.
	r.unread.read("@b", "", 6)
	u, _, _ = r.Unread("@b", true)
	if u.Total != (Counts{}) || len(u.Threads) != 0 {
		t.Fatalf("after an unthreaded receipt: %+v", u)
	}
}

func TestUnreadIndexForgetsOldOutcomes(t *testing.T) {
	r := testRoom(16)
	r.applyState(&storage.Event{Pos: 1, Type: "m.room.member", StateKey: strp("@b"), Membership: "join"})
	for p := stream.Pos(2); p < notifyCap+10; p++ {
		r.apply(pushed(p, "@a", "", notify))
	}
	if _, rp, ok := r.Unread("@b", false); ok || rp.Since != 1 {
		t.Fatalf("a reader far behind must be counted from storage: ok=%v since=%d", ok, rp.Since)
	}
	r.unread.read("@b", "", notifyCap)
	if u, _, ok := r.Unread("@b", false); !ok || u.Total.Notify != 9 {
		t.Fatalf("recent reader: %+v %v", u, ok)
	}
}

func strp(s string) *string { return &s }

// BenchmarkRoomItems is a long-poll reading what is new after its token from the window.
func BenchmarkRoomItems(b *testing.B) {
	r := testRoom(512)
	for p := stream.Pos(1); p <= 512; p++ {
		r.apply(message(p, "@a"))
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if items, ok := r.Items(510, 512); !ok || len(items) != 2 {
			b.Fatal(items)
		}
	}
}

func TestEvictIdle(t *testing.T) {
	h := NewHub(nil, stream.NewNotifier(0), 16, nil)
	r := testRoom(16)
	h.rooms["!r"] = r
	r.used.Store(1) // long ago
	fresh := testRoom(16)
	fresh.used.Store(time.Now().Unix())
	h.rooms["!fresh"] = fresh
	if rooms, _ := h.Evict(time.Minute); rooms != 1 || h.ActiveRooms() != 1 {
		t.Fatalf("evicted %d, %d left", rooms, h.ActiveRooms())
	}
}

func member(pos stream.Pos, user, membership, prev string) *Published {
	e := &storage.Event{Pos: pos, ID: fmt.Sprintf("$%d", pos), RoomID: "!r", Type: "m.room.member", StateKey: &user, Sender: user,
		PDU: []byte(`{"content":{"membership":"` + membership + `"}}`), Membership: membership, PrevMembership: prev, Visibility: "shared"}
	return &Published{RoomID: "!r", Item: EventItem(e), Event: e, State: []*storage.Event{e}}
}

// A user's membership history in memory is bounded however often they join and leave;
// profile changes (join to join) add nothing; a cut history says so.
func TestMemberHistoryBounded(t *testing.T) {
	r := testRoom(8)
	pos := stream.Pos(0)
	r.apply(member(pos+1, "@u", "join", ""))
	pos++
	for i := 0; i < 10; i++ {
		pos++
		r.apply(member(pos, "@u", "join", "join"))
	}
	if h, complete := r.History("@u"); len(h) != 1 || !complete {
		t.Fatalf("profile changes grew the history: %v", h)
	}
	for i := 0; i < 1000; i++ {
		pos++
		r.apply(member(pos, "@u", "leave", "join"))
		pos++
		r.apply(member(pos, "@u", "join", "leave"))
	}
	h, complete := r.History("@u")
	if len(h) > maxHistory || complete {
		t.Fatalf("history after 2000 changes: %d kept, complete %v", len(h), complete)
	}
	if h[len(h)-1].Pos != pos || r.Membership("@u") != "join" {
		t.Fatalf("latest change lost: %v", h[len(h)-1])
	}
}
