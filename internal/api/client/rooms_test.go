package client_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

// stateContent reads one state event's content.
func stateContent(t *testing.T, c *hstest.Client, roomID, evType, key string) hstest.Response {
	t.Helper()
	return c.Must(t, 200, "GET", hstest.Room(roomID)+"/state/"+evType+"/"+url.PathEscape(key), nil)
}

func TestCreateRoomPresets(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	cases := []struct {
		preset, joinRule, guestAccess string
	}{
		{"private_chat", "invite", "can_join"},
		{"trusted_private_chat", "invite", "can_join"},
		{"public_chat", "public", ""},
	}
	for _, c := range cases {
		for _, version := range roomVersions {
			t.Run(c.preset+"/v"+version, func(t *testing.T) {
				room := u.CreateRoom(t, map[string]any{"preset": c.preset, "room_version": version, "name": "N", "topic": "T"})
				if got := stateContent(t, u, room, "m.room.join_rules", "").Get("join_rule").String(); got != c.joinRule {
					t.Errorf("join_rule %q, want %q", got, c.joinRule)
				}
				if got := stateContent(t, u, room, "m.room.history_visibility", "").Get("history_visibility").String(); got != "shared" {
					t.Errorf("history_visibility %q", got)
				}
				ga := u.Do(t, "GET", hstest.Room(room)+"/state/m.room.guest_access/", nil)
				if c.guestAccess == "" {
					if ga.Status != 404 {
						t.Errorf("public_chat should have no guest_access event: %s", ga)
					}
				} else if ga.Get("guest_access").String() != c.guestAccess {
					t.Errorf("guest_access: %s", ga)
				}
				if got := stateContent(t, u, room, "m.room.create", "").Get("room_version").String(); got != version {
					t.Errorf("room_version %q", got)
				}
				if got := stateContent(t, u, room, "m.room.name", "").Get("name").String(); got != "N" {
					t.Errorf("name %q", got)
				}
				if got := stateContent(t, u, room, "m.room.topic", "").Get("topic").String(); got != "T" {
					t.Errorf("topic %q", got)
				}
				pl := stateContent(t, u, room, "m.room.power_levels", "")
				if version == "12" {
					if pl.Get("users").Raw != "{}" {
						t.Errorf("v12 creator must not be in power levels: %s", pl)
					}
				} else if pl.Get("users."+escapeKey(u.UserID)).Int() != 100 {
					t.Errorf("creator power level: %s", pl)
				}
				u.Send(t, room, "hello")
			})
		}
	}
}

// escapeKey escapes a user ID for a gjson path.
func escapeKey(k string) string {
	out := ""
	for _, c := range k {
		if c == '.' || c == '*' || c == '?' {
			out += `\`
		}
		out += string(c)
	}
	return out
}

func TestCreateRoomOptions(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	friend := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{
		"preset":                       "private_chat",
		"room_alias_name":              "lounge",
		"visibility":                   "public",
		"invite":                       []string{friend.UserID},
		"is_direct":                    true,
		"creation_content":             map[string]any{"m.federate": false},
		"initial_state":                []map[string]any{{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "joined"}}, {"type": "com.example.custom", "state_key": "k", "content": map[string]int{"n": 1}}},
		"power_level_content_override": map[string]any{"events_default": 10},
	})
	if got := stateContent(t, u, room, "m.room.canonical_alias", "").Get("alias").String(); got != "#lounge:localhost" {
		t.Errorf("canonical alias %q", got)
	}
	if r := s.Anon().Must(t, 200, "GET", "directory/room/"+url.PathEscape("#lounge:localhost"), nil); r.Get("room_id").String() != room {
		t.Errorf("alias lookup: %s", r)
	}
	if got := stateContent(t, u, room, "m.room.history_visibility", "").Get("history_visibility").String(); got != "joined" {
		t.Errorf("initial_state must override the preset: %q", got)
	}
	if got := stateContent(t, u, room, "com.example.custom", "k").Get("n").Int(); got != 1 {
		t.Errorf("custom state %d", got)
	}
	if got := stateContent(t, u, room, "m.room.create", "").Get("m\\.federate").Raw; got != "false" {
		t.Errorf("creation_content: %q", got)
	}
	if got := stateContent(t, u, room, "m.room.power_levels", "").Get("events_default").Int(); got != 10 {
		t.Errorf("power level override: %d", got)
	}
	inv := stateContent(t, u, room, "m.room.member", friend.UserID)
	if inv.Get("membership").String() != "invite" || !inv.Get("is_direct").Bool() {
		t.Errorf("invite: %s", inv)
	}
	if s.Anon().Must(t, 200, "GET", "directory/list/room/"+url.PathEscape(room), nil).Get("visibility").String() != "public" {
		t.Error("room not published")
	}
	u.MustErr(t, 400, "M_ROOM_IN_USE", "POST", "createRoom", map[string]any{"room_alias_name": "lounge"})
	u.MustErr(t, 400, "M_UNSUPPORTED_ROOM_VERSION", "POST", "createRoom", map[string]any{"room_version": "13"})
	u.MustErr(t, 400, "M_BAD_JSON", "POST", "createRoom", map[string]any{"preset": "party"})
	u.MustErr(t, 400, "M_BAD_JSON", "POST", "createRoom", map[string]any{"name": 5})
	u.MustErr(t, 400, "M_NOT_JSON", "POST", "createRoom", "{")
	// A refused creation leaves nothing behind.
	before := len(u.Must(t, 200, "GET", "joined_rooms", nil).Get("joined_rooms").Array())
	u.MustErr(t, 400, "M_INVALID_ROOM_STATE", "POST", "createRoom", map[string]any{
		"power_level_content_override": map[string]any{"users": map[string]int{u.UserID: 0}}, "name": "x"})
	if after := len(u.Must(t, 200, "GET", "joined_rooms", nil).Get("joined_rooms").Array()); after != before {
		t.Errorf("refused createRoom left a room: %d -> %d", before, after)
	}
}

func TestMembershipTransitions(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	bob := s.Register(t, "")
	eve := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "private_chat"})
	member := func(u *hstest.Client) string {
		return owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.member/"+url.PathEscape(u.UserID), nil).Get("membership").String()
	}
	// An invite-only room refuses uninvited joins.
	bob.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/join", map[string]any{})
	owner.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": bob.UserID})
	if member(bob) != "invite" {
		t.Fatal("not invited")
	}
	owner.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": bob.UserID + "x"})
	bob.Must(t, 200, "POST", hstest.Room(room)+"/join", map[string]any{})
	if member(bob) != "join" {
		t.Fatal("not joined")
	}
	// A plain member may not kick, ban or invite (invite needs 0 here: private_chat).
	bob.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/kick", map[string]any{"user_id": owner.UserID})
	bob.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": owner.UserID})
	owner.Must(t, 200, "POST", hstest.Room(room)+"/kick", map[string]any{"user_id": bob.UserID, "reason": "bye"})
	if member(bob) != "leave" {
		t.Fatal("not kicked")
	}
	owner.Must(t, 200, "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": eve.UserID})
	if member(eve) != "ban" {
		t.Fatal("not banned")
	}
	owner.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": eve.UserID})
	eve.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/join", map[string]any{})
	owner.Must(t, 200, "POST", hstest.Room(room)+"/unban", map[string]any{"user_id": eve.UserID})
	if member(eve) != "leave" {
		t.Fatal("not unbanned")
	}
	owner.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/unban", map[string]any{"user_id": eve.UserID})
	// Leaving, and forgetting only after leaving.
	owner.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": bob.UserID})
	bob.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{}) // rejects the invite
	bob.MustErr(t, 403, "M_FORBIDDEN", "POST", hstest.Room(room)+"/leave", map[string]any{})
	owner.MustErr(t, 400, "M_UNKNOWN", "POST", hstest.Room(room)+"/forget", map[string]any{})
	bob.Must(t, 200, "POST", hstest.Room(room)+"/forget", map[string]any{})

	// Public rooms: anyone may join by ID or alias; members can leave and rejoin.
	pub := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "room_alias_name": "pub"})
	bob.Must(t, 200, "POST", "join/"+url.PathEscape("#pub:localhost"), map[string]any{})
	bob.Must(t, 200, "POST", hstest.Room(pub)+"/leave", nil)
	bob.Must(t, 200, "POST", "join/"+url.PathEscape(pub), nil)
	if got := bob.Must(t, 200, "GET", "joined_rooms", nil).Get("joined_rooms").Array(); len(got) != 1 || got[0].String() != pub {
		t.Fatalf("joined_rooms: %v", got)
	}
	bob.MustErr(t, 404, "M_NOT_FOUND", "POST", "join/"+url.PathEscape("#nope:localhost"), nil)
	bob.MustErr(t, 404, "M_NOT_FOUND", "POST", "join/"+url.PathEscape("!nope:localhost"), nil)
	bob.MustErr(t, 400, "M_INVALID_PARAM", "POST", "join/nope", nil)
	owner.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room(pub)+"/invite", map[string]any{"user_id": "@ghost:localhost"})
	owner.MustErr(t, 400, "M_MISSING_PARAM", "POST", hstest.Room(pub)+"/invite", map[string]any{})
	// Joining again with the same profile creates no event.
	before := bob.Must(t, 200, "GET", hstest.Room(pub)+"/state/m.room.member/"+url.PathEscape(bob.UserID)+"?format=event", nil).Get("event_id").String()
	bob.Join(t, pub)
	after := bob.Must(t, 200, "GET", hstest.Room(pub)+"/state/m.room.member/"+url.PathEscape(bob.UserID)+"?format=event", nil).Get("event_id").String()
	if before != after {
		t.Error("a repeated join created a new event")
	}
}

func TestSendIdempotencyAndState(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	room := u.CreateRoom(t, nil)
	path := hstest.Room(room) + "/send/m.room.message/txn-1"
	first := u.Must(t, 200, "PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}).Get("event_id").String()
	second := u.Must(t, 200, "PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}).Get("event_id").String()
	if first == "" || first != second {
		t.Fatalf("retry gave %q then %q", first, second)
	}
	// The same transaction ID from another device is a new event.
	other := s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": u.UserID, "password": "pw-" + localpart(u.UserID)})
	oc := &hstest.Client{S: s, Token: other.Get("access_token").String()}
	if third := oc.Must(t, 200, "PUT", path, map[string]any{"msgtype": "m.text", "body": "once"}).Get("event_id").String(); third == first {
		t.Fatal("another device's transaction was deduplicated")
	}
	msgs := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=10&filter="+url.QueryEscape(`{"types":["m.room.message"]}`), nil)
	if n := len(msgs.Get("chunk").Array()); n != 2 {
		t.Fatalf("want 2 messages, got %d: %s", n, msgs)
	}
	if msgs.Get("chunk.1.unsigned.transaction_id").String() != "txn-1" {
		t.Errorf("own event lacks transaction_id: %s", msgs.Get("chunk.1").Raw)
	}

	// State: set, read back, same content again is not a new event.
	id1 := u.SetState(t, room, "m.room.topic", "", map[string]any{"topic": "one"})
	id2 := u.SetState(t, room, "m.room.topic", "", map[string]any{"topic": "one"})
	if id1 != id2 {
		t.Error("identical state created a new event")
	}
	u.SetState(t, room, "m.room.topic", "", map[string]any{"topic": "two"})
	ev := u.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.topic/?format=event", nil)
	if ev.Get("content.topic").String() != "two" || ev.Get("unsigned.prev_content.topic").String() != "one" {
		t.Errorf("state event: %s", ev)
	}
	all := u.Must(t, 200, "GET", hstest.Room(room)+"/state", nil)
	if len(all.JSON().Array()) < 5 {
		t.Errorf("state: %s", all)
	}
	u.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/state/m.room.name/", nil)
	// Events are real room-version events.
	e := u.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(first), nil)
	if e.Get("event_id").String() != first || e.Get("sender").String() != u.UserID || e.Get("content.body").String() != "once" {
		t.Errorf("event: %s", e)
	}
	u.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/event/"+url.PathEscape("$nope"), nil)
	// Bad input changes nothing.
	u.MustErr(t, 400, "M_NOT_JSON", "PUT", hstest.Room(room)+"/send/m.room.message/bad1", "not json")
	u.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/send/m.room.message/bad2", "[1,2]")
	u.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/send/m.room.message/bad3", `{"n":1.5}`)
	u.MustErr(t, 413, "M_TOO_LARGE", "PUT", hstest.Room(room)+"/send/m.room.message/big", fmt.Sprintf(`{"body":"%s"}`, strings.Repeat("x", 70000)))
	stranger := s.Register(t, "")
	stranger.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/send/m.room.message/x", map[string]any{"body": "hi"})
	stranger.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room("!unknown:localhost")+"/send/m.room.message/x", map[string]any{"body": "hi"})
	stranger.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/state", nil)
}

func localpart(userID string) string {
	for i := 1; i < len(userID); i++ {
		if userID[i] == ':' {
			return userID[1:i]
		}
	}
	return userID
}

func TestRedaction(t *testing.T) {
	for _, version := range roomVersions {
		t.Run("v"+version, func(t *testing.T) {
			s := hstest.New(t)
			owner := s.Register(t, "")
			bob := s.Register(t, "")
			room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": version})
			bob.Join(t, room)
			mine := bob.Send(t, room, "secret")
			theirs := owner.Send(t, room, "owner's")
			// Bob may redact his own event but not the owner's.
			bob.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(theirs)+"/r1", map[string]any{})
			rid := bob.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(mine)+"/r2", map[string]any{"reason": "oops"}).Get("event_id").String()
			ev := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(mine), nil)
			if ev.Get("content").Raw != "{}" || ev.Get("unsigned.redacted_because.event_id").String() != rid {
				t.Fatalf("redacted event: %s", ev)
			}
			red := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(rid), nil)
			if red.Get("redacts").String() != mine {
				t.Errorf("redaction event: %s", red)
			}
			if version != "10" && red.Get("content.redacts").String() != mine {
				t.Errorf("v11+ redaction must carry redacts in content: %s", red)
			}
			// The owner (power 100) may redact anyone's events; state keeps its key fields.
			owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(theirs)+"/r3", map[string]any{})
			jr := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.join_rules/?format=event", nil)
			owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(jr.Get("event_id").String())+"/r4", map[string]any{})
			if got := stateContent(t, owner, room, "m.room.join_rules", "").Get("join_rule").String(); got != "public" {
				t.Errorf("redacted join rules lost join_rule: %q", got)
			}
		})
	}
}
