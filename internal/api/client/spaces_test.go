package client_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"porthole/internal/hstest"
)

func eventTS(t *testing.T, c *hstest.Client, room, id string) int64 {
	t.Helper()
	return c.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(id), nil).Get("origin_server_ts").Int()
}

func TestTimestampToEvent(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "joined"}}}})
	// Timestamps are in milliseconds: keep the messages' apart.
	send := func(c *hstest.Client, body string) (string, int64) {
		time.Sleep(3 * time.Millisecond)
		id := c.Send(t, room, body)
		time.Sleep(3 * time.Millisecond)
		return id, eventTS(t, c, room, id)
	}
	m1, ts1 := send(alice, "one")
	m2, ts2 := send(alice, "two")
	bob.Join(t, room)
	m3, ts3 := send(alice, "three")
	v1 := "/_matrix/client/v1/" + hstest.Room(room) + "/timestamp_to_event?"
	find := func(c *hstest.Client, ts int64, dir string) string {
		t.Helper()
		r := c.Must(t, 200, "GET", v1+"ts="+strconv.FormatInt(ts, 10)+"&dir="+dir, nil)
		if r.Get("origin_server_ts").Int() == 0 {
			t.Fatalf("no origin_server_ts: %s", r)
		}
		return r.Get("event_id").String()
	}
	for _, c := range []struct {
		ts   int64
		dir  string
		want string
	}{{ts2, "f", m2}, {ts2, "b", m2}, {ts2 + 1, "b", m2}, {ts2 - 1, "b", m1}, {ts1, "f", m1}, {ts3, "b", m3}, {ts3 + 1, "b", m3}} {
		if got := find(alice, c.ts, c.dir); got != c.want {
			t.Errorf("ts %d dir %s: got %s, want %s", c.ts, c.dir, got, c.want)
		}
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+"ts="+strconv.FormatInt(ts3+1, 10)+"&dir=f", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+"ts=0&dir=b", nil)
	// Bob joined after m2 in a room with joined history: m1 and m2 are hidden from him, so
	// going back from m2 he finds the room's creation (shared until the history setting),
	// and forward from m1 his own join.
	if got := find(bob, ts2, "b"); got == m1 || got == m2 {
		t.Fatalf("bob found %s before his join", got)
	}
	join := find(bob, ts1, "f")
	if ev := bob.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(join), nil); ev.Get("type").String() != "m.room.member" || ev.Get("state_key").String() != bob.UserID {
		t.Fatalf("bob's first visible event after m1: %s", ev)
	}
	// After leaving, he finds nothing after his leave.
	bob.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	_, ts4 := send(alice, "four")
	bob.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+"ts="+strconv.FormatInt(ts4, 10)+"&dir=f", nil)
	if got := find(bob, ts3, "f"); got != m3 {
		t.Fatalf("before his leave: %s", got)
	}
	// Strangers, and guests, are refused; bad parameters are 400.
	eve := s.Register(t, "")
	eve.MustErr(t, 403, "M_FORBIDDEN", "GET", v1+"ts=0&dir=f", nil)
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", v1+"ts=0&dir=f", nil)
	alice.MustErr(t, 400, "M_MISSING_PARAM", "GET", v1+"dir=f", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"ts=x&dir=f", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"ts=1&dir=up", nil)
	// A world-readable room can be searched without joining.
	open := alice.WorldReadableRoom(t)
	id := alice.Send(t, open, "visible")
	if got := eve.Must(t, 200, "GET", "/_matrix/client/v1/"+hstest.Room(open)+"/timestamp_to_event?ts="+strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)+"&dir=b", nil).Get("event_id").String(); got != id {
		t.Fatalf("world-readable: %s, want %s", got, id)
	}
}

// spaceChild links a child room into a space.
func spaceChild(t *testing.T, c *hstest.Client, space, child string, content map[string]any) {
	t.Helper()
	if content == nil {
		content = map[string]any{}
	}
	if _, ok := content["via"]; !ok {
		content["via"] = []string{"localhost"}
	}
	c.SetState(t, space, "m.space.child", child, content)
}

func hierarchyIDs(r hstest.Response) []string {
	var out []string
	for _, room := range r.Get("rooms").Array() {
		out = append(out, room.Get("room_id").String())
	}
	return out
}

func TestSpaceHierarchy(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	space := func(preset string) string {
		return alice.CreateRoom(t, map[string]any{"preset": preset, "creation_content": map[string]any{"type": "m.space"}})
	}
	root := space("public_chat")
	sub := space("public_chat")
	a := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "A"})
	b := alice.CreateRoom(t, map[string]any{"preset": "private_chat", "name": "B"})
	d := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "D"})
	gone := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	spaceChild(t, alice, root, a, map[string]any{"order": "b"})
	spaceChild(t, alice, root, b, nil)
	spaceChild(t, alice, root, sub, map[string]any{"order": "a", "suggested": true})
	spaceChild(t, alice, root, gone, map[string]any{"via": []string{}}) // removed: no via
	spaceChild(t, alice, root, "!unknown:localhost", nil)               // not a room here
	spaceChild(t, alice, sub, d, nil)
	spaceChild(t, alice, sub, root, nil) // a loop

	v1 := "/_matrix/client/v1/" + hstest.Room(root) + "/hierarchy"
	check := func(c *hstest.Client, query string, want ...string) hstest.Response {
		t.Helper()
		r := c.Must(t, 200, "GET", v1+query, nil)
		if got := strings.Join(hierarchyIDs(r), " "); got != strings.Join(want, " ") {
			t.Fatalf("hierarchy%s: got %s\nwant %s", query, got, strings.Join(want, " "))
		}
		return r
	}
	// Depth first, children by order, then timestamp; B is invite-only, so bob does not see it.
	r := check(alice, "", root, sub, d, a, b)
	check(bob, "", root, sub, d, a)
	check(s.Guest(t), "", root, sub, d, a)
	check(alice, "?suggested_only=true", root, sub)
	check(alice, "?max_depth=1", root, sub, a, b)
	check(alice, "?max_depth=0", root)
	first := r.Get("rooms.0")
	if first.Get("room_type").String() != "m.space" || first.Get("num_joined_members").Int() != 1 || first.Get("join_rule").String() != "public" ||
		len(first.Get("children_state").Array()) != 4 || first.Get("room_version").String() == "" {
		t.Fatalf("root entry: %s", first.Raw)
	}
	child := first.Get("children_state.0")
	if child.Get("type").String() != "m.space.child" || child.Get("state_key").String() != sub || child.Get("origin_server_ts").Int() == 0 || child.Get("sender").String() != alice.UserID {
		t.Fatalf("stripped child: %s", child.Raw)
	}
	if a := r.Get("rooms.3"); a.Get("name").String() != "A" || len(a.Get("children_state").Array()) != 0 || !a.Get("children_state").IsArray() {
		t.Fatalf("room entry: %s", a.Raw)
	}

	// Pages of two, then of two, then the last.
	p1 := check(alice, "?limit=2", root, sub)
	tok := p1.Get("next_batch").String()
	p2 := check(alice, "?limit=2&from="+url.QueryEscape(tok), d, a)
	p3 := check(alice, "?limit=2&from="+url.QueryEscape(p2.Get("next_batch").String()), b)
	if p3.Get("next_batch").Exists() {
		t.Fatalf("last page has a next_batch: %s", p3)
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"?limit=2&max_depth=1&from="+url.QueryEscape(tok), nil)
	bob.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"?limit=2&from="+url.QueryEscape(tok), nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"?from=garbage", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"?limit=0", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"?max_depth=-1", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"?suggested_only=perhaps", nil)

	// A root the caller may not see, or one that is not here, is refused.
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", "/_matrix/client/v1/"+hstest.Room(b)+"/hierarchy", nil)
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", "/_matrix/client/v1/"+hstest.Room("!nope:localhost")+"/hierarchy", nil)
	// Once invited, bob sees B.
	alice.Must(t, 200, "POST", hstest.Room(b)+"/invite", map[string]any{"user_id": bob.UserID})
	check(bob, "", root, sub, d, a, b)
}

func TestRoomSummary(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	anon := s.Anon()
	v1 := "/_matrix/client/v1/room_summary/"
	public := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "Public", "topic": "t", "room_alias_name": "summary"})
	private := alice.CreateRoom(t, map[string]any{"preset": "private_chat", "name": "Private", "initial_state": []map[string]any{
		{"type": "m.room.encryption", "content": map[string]string{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	readable := alice.CreateRoom(t, map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})

	r := anon.Must(t, 200, "GET", v1+url.PathEscape(public), nil)
	if r.Get("name").String() != "Public" || r.Get("topic").String() != "t" || r.Get("join_rule").String() != "public" || r.Get("membership").Exists() ||
		r.Get("canonical_alias").String() != "#summary:localhost" || r.Get("room_version").String() == "" || r.Get("children_state").Exists() {
		t.Fatalf("anonymous summary: %s", r)
	}
	if r := anon.Must(t, 200, "GET", v1+url.PathEscape("#summary:localhost"), nil); r.Get("room_id").String() != public {
		t.Fatalf("by alias: %s", r)
	}
	anon.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+url.PathEscape("#nothing:localhost"), nil)
	anon.Must(t, 200, "GET", v1+url.PathEscape(readable), nil)
	anon.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+url.PathEscape(private), nil)
	bob.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+url.PathEscape(private), nil)
	anon.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+url.PathEscape("!nope:localhost"), nil)
	if r := bob.Must(t, 200, "GET", v1+url.PathEscape(public), nil); r.Get("membership").String() != "leave" {
		t.Fatalf("a stranger's membership: %s", r)
	}
	if r := s.Guest(t).Must(t, 200, "GET", v1+url.PathEscape(public), nil); r.Get("membership").String() != "leave" {
		t.Fatalf("a guest's summary: %s", r)
	}
	(&hstest.Client{S: s, Token: "bogus"}).MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", v1+url.PathEscape(public), nil)

	alice.Must(t, 200, "POST", hstest.Room(private)+"/invite", map[string]any{"user_id": bob.UserID})
	r = bob.Must(t, 200, "GET", v1+url.PathEscape(private), nil)
	if r.Get("membership").String() != "invite" || r.Get("encryption").String() != "m.megolm.v1.aes-sha2" || r.Get("name").String() != "Private" {
		t.Fatalf("invited summary: %s", r)
	}
	if r := alice.Must(t, 200, "GET", v1+url.PathEscape(private), nil); r.Get("membership").String() != "join" {
		t.Fatalf("member's summary: %s", r)
	}

	// Restricted rooms: visible to members of an allowed room.
	restricted := alice.CreateRoom(t, map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.join_rules", "content": map[string]any{"join_rule": "restricted", "allow": []map[string]string{{"type": "m.room_membership", "room_id": public}}}}}})
	bob.MustErr(t, 404, "M_NOT_FOUND", "GET", v1+url.PathEscape(restricted), nil)
	bob.Join(t, public)
	r = bob.Must(t, 200, "GET", v1+url.PathEscape(restricted), nil)
	if r.Get("join_rule").String() != "restricted" || r.Get("allowed_room_ids.0").String() != public {
		t.Fatalf("restricted summary: %s", r)
	}
	anon.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1+"nonsense", nil)
}
