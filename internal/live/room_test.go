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
		unread: &unreadIndex{bySender: map[string][]stream.Pos{}, reads: map[string]stream.Pos{}, complete: true}, limit: limit}
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

func TestUnreadIndex(t *testing.T) {
	r := testRoom(100)
	r.applyState(&storage.Event{Pos: 1, Type: "m.room.member", StateKey: strp("@b"), Membership: "join"})
	for p := stream.Pos(2); p <= 11; p++ {
		sender := "@a"
		if p%2 == 0 {
			sender = "@b"
		}
		r.apply(message(p, sender))
	}
	if n, _, ok := r.Unread("@b"); !ok || n != 5 {
		t.Fatalf("unread for @b: %d %v", n, ok)
	}
	r.unread.read("@b", 7)
	if n, _, _ := r.Unread("@b"); n != 2 {
		t.Fatalf("unread after receipt: %d", n)
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
	return &Published{RoomID: "!r", Item: EventItem(e), Event: e}
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
