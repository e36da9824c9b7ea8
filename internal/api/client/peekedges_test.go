package client_test

import (
	"net/url"
	"testing"
	"time"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// A guest joining through the state route is stamped kind: guest like one using /join,
// so revoking guest access finds it; it may not change anyone else's membership.
func TestGuestMembershipThroughStateRoute(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "private_chat", "invite": []string{}})
	owner.SetState(t, room, "m.room.join_rules", "", map[string]string{"join_rule": "public"})
	g := s.Guest(t)
	memberPath := func(c *hstest.Client) string {
		return hstest.Room(room) + "/state/m.room.member/" + url.PathEscape(c.UserID)
	}
	g.Must(t, 200, "PUT", memberPath(g), map[string]any{"membership": "join"})
	if got := owner.Must(t, 200, "GET", memberPath(g), nil); got.Get("kind").String() != "guest" {
		t.Fatalf("guest join through the state route: %s", got)
	}
	// Rewriting its member event cannot drop the stamp.
	g.Must(t, 200, "PUT", memberPath(g), map[string]any{"membership": "join", "displayname": "V", "kind": "user"})
	if got := owner.Must(t, 200, "GET", memberPath(g), nil); got.Get("kind").String() != "guest" || got.Get("displayname").String() != "V" {
		t.Fatalf("guest rewrite: %s", got)
	}
	bob := s.Register(t, "")
	g.MustErr(t, 403, "M_FORBIDDEN", "PUT", memberPath(bob), map[string]any{"membership": "invite"})
	g.MustErr(t, 403, "M_FORBIDDEN", "PUT", memberPath(g), map[string]any{"membership": "ban"})
	if got := owner.Do(t, "GET", memberPath(bob), nil); got.Status != 404 {
		t.Fatalf("a guest's refused invite left a trace: %s", got)
	}
	owner.SetState(t, room, "m.room.guest_access", "", map[string]string{"guest_access": "forbidden"})
	if got := owner.Must(t, 200, "GET", memberPath(g), nil).Get("membership").String(); got != "leave" {
		t.Fatalf("guest not made to leave on revocation: %s", got)
	}
}

// A banned user is a stranger: no view of the past (unlike a user who left), but it may
// peek while the room is world-readable.
func TestBannedUserIsAStranger(t *testing.T) {
	s := hstest.New(t)
	owner, bob, room := bobWasHere(t, s)
	owner.Must(t, 200, "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": bob.UserID})
	owner.Send(t, room, "after the ban")
	for _, p := range []string{"/initialSync", "/messages?dir=b", "/state", "/members"} {
		bob.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+p, nil)
	}
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", eventsPath(room, "", "timeout=0"), nil)
	owner.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "world_readable"})
	r := bob.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil)
	if r.Get("membership").Exists() {
		t.Fatalf("a banned user peeking is not a member: %s", r)
	}
	// Each event is judged by bob's membership at it: joined then, banned later.
	if got := chunkBodiesAt(r, "messages.chunk"); len(got) != 1 || got[0] != "while bob was here" {
		t.Fatalf("banned peeker's messages: %v", got)
	}
}

// The deprecated global stream delivers the caller's own invites, whatever the room's
// history visibility.
func TestGlobalEventsDeliversInvites(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "private_chat"})
	owner.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
	from := u.Must(t, 200, "GET", "events?timeout=0", nil).Get("end").String()
	done := make(chan hstest.Response, 1)
	go func() { done <- u.Do(t, "GET", "events?timeout=20000&from="+from, nil) }()
	s.WaitParked(t, 1)
	owner.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": u.UserID})
	r := <-done
	ev := r.Get("chunk.0")
	if ev.Get("type").String() != "m.room.member" || ev.Get("state_key").String() != u.UserID ||
		ev.Get("content.membership").String() != "invite" || ev.Get("room_id").String() != room {
		t.Fatalf("invite not delivered: %s", r)
	}
}

// A token ahead of every position the server handed out counts as now: the answer's end
// is the current position, and feeding it back delivers what comes next.
func TestEventsFutureTokenCountsAsNow(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	now := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	r := g.Must(t, 200, "GET", eventsPath(room, "s999999", "timeout=0"), nil)
	if got := r.Get("end").String(); got != now {
		t.Fatalf("future token: end %q, want the current %q", got, now)
	}
	owner.Send(t, room, "next")
	if got := chunkBodies(g.Must(t, 200, "GET", eventsPath(room, r.Get("end").String(), "timeout=0"), nil)); len(got) != 1 || got[0] != "next" {
		t.Fatalf("after a future token: %v", got)
	}
	// The same for /sync.
	u := s.Register(t, "")
	if got := u.Must(t, 200, "GET", "sync?timeout=0&since=s999999", nil).Get("next_batch").String(); got == "s999999" {
		t.Fatal("sync echoed a future token")
	}
}

// A negative timeout is a short wait (the floor), not an immediate answer; an empty one
// is refused.
func TestEventsTimeoutEdges(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.LongPollMin = 20 * time.Second })
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	done := make(chan hstest.Response, 1)
	go func() { done <- g.Do(t, "GET", eventsPath(room, from, "timeout=-5"), nil) }()
	s.WaitParked(t, 1) // it waits rather than answering at once
	owner.Send(t, room, "wake")
	if got := chunkBodies(<-done); len(got) != 1 || got[0] != "wake" {
		t.Fatalf("negative timeout poll: %v", got)
	}
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, from, "timeout="), nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, from, "timeout=1.5"), nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, "x123", ""), nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, "", "to=garbage"), nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, "", "dir=sideways"), nil)
}

// Messages from users the reader ignores (m.ignored_user_list) reach none of the reader's
// timelines; their state events still do, and other readers are unaffected.
func TestIgnoredUsersAreFiltered(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	troll := s.Register(t, "")
	carol := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	troll.Join(t, room)
	carol.Join(t, room)
	first := alice.Must(t, 200, "GET", "sync", nil)
	from := alice.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	alice.Must(t, 200, "PUT", "user/"+url.PathEscape(alice.UserID)+"/account_data/m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{troll.UserID: map[string]any{}}})
	troll.Send(t, room, "noise")
	troll.SetState(t, room, "m.room.member", troll.UserID, map[string]string{"membership": "join", "displayname": "T"})
	carol.Send(t, room, "signal")

	want := []string{"signal"}
	check := func(label string, got []string) {
		t.Helper()
		if len(got) != len(want) || got[0] != want[0] {
			t.Errorf("%s: %v, want %v", label, got, want)
		}
	}
	check("/events?room_id", chunkBodies(alice.Must(t, 200, "GET", eventsPath(room, from, "timeout=0&limit=100"), nil)))
	check("/events", chunkBodies(alice.Must(t, 200, "GET", "events?timeout=0&limit=100&from="+from, nil)))
	incr := alice.Must(t, 200, "GET", "sync?timeout=0&since="+first.Get("next_batch").String(), nil)
	check("/sync", timelineBodies(joinedRoom(incr, room)))
	msgs := alice.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=2", nil)
	check("/messages", bodies(msgs, "chunk"))
	hasState := false
	for _, e := range joinedRoom(incr, room).Get("timeline.events").Array() {
		hasState = hasState || e.Get("type").String() == "m.room.member" && e.Get("sender").String() == troll.UserID
	}
	if !hasState {
		t.Error("the ignored user's state event was dropped from /sync")
	}
	// Carol ignores nobody.
	if got := bodies(carol.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=3", nil), "chunk"); len(got) != 2 {
		t.Errorf("carol's /messages: %v", got)
	}
}

// A real user streaming /events is online; a guest peeking sets no presence.
func TestEventsMarksRealUsersOnline(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	room := u.WorldReadableRoom(t)
	u.Must(t, 200, "PUT", "presence/"+url.PathEscape(u.UserID)+"/status", map[string]any{"presence": "offline"})
	u.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil)
	if got := u.Must(t, 200, "GET", "presence/"+url.PathEscape(u.UserID)+"/status", nil).Get("presence").String(); got != "online" {
		t.Fatalf("presence after /events: %s", got)
	}
	g := s.Guest(t)
	g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil)
	g.Join(t, room) // so that u may read its presence
	if got := u.Must(t, 200, "GET", "presence/"+url.PathEscape(g.UserID)+"/status", nil); got.Get("presence").String() != "offline" {
		t.Fatalf("a peeking guest became online: %s", got)
	}
}

// Invites from users the reader ignores are left out of /sync, full and incremental (as
// in Synapse; sytest 49ignore), while other users' invites still arrive.
func TestIgnoredUsersInvitesHidden(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	troll := s.Register(t, "")
	friend := s.Register(t, "")
	trollRoom := troll.CreateRoom(t, nil)
	friendRoom := friend.CreateRoom(t, nil)
	alice.Must(t, 200, "PUT", "user/"+url.PathEscape(alice.UserID)+"/account_data/m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{troll.UserID: map[string]any{}}})
	since := alice.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	troll.Must(t, 200, "POST", hstest.Room(trollRoom)+"/invite", map[string]any{"user_id": alice.UserID})
	friend.Must(t, 200, "POST", hstest.Room(friendRoom)+"/invite", map[string]any{"user_id": alice.UserID})
	for _, path := range []string{"sync?timeout=0&since=" + since, "sync"} {
		r := alice.Must(t, 200, "GET", path, nil)
		if r.Get("rooms.invite." + escapeKey(trollRoom)).Exists() {
			t.Errorf("%s: the ignored user's invite is shown: %s", path, r.Get("rooms.invite").Raw)
		}
		if !r.Get("rooms.invite." + escapeKey(friendRoom)).Exists() {
			t.Errorf("%s: the other invite is missing: %s", path, r.Get("rooms.invite").Raw)
		}
	}
	// Unignoring brings it back in a full sync.
	alice.Must(t, 200, "PUT", "user/"+url.PathEscape(alice.UserID)+"/account_data/m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{}})
	if r := alice.Must(t, 200, "GET", "sync", nil); !r.Get("rooms.invite." + escapeKey(trollRoom)).Exists() {
		t.Errorf("after unignoring, the invite is missing: %s", r.Get("rooms.invite").Raw)
	}
}
