package client_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

// Every m.room.redaction takes one path, whichever route it comes by: /send with the
// target in content.redacts is checked (own event or redact power) and applied by the
// server exactly like /redact.
func TestRedactionThroughSend(t *testing.T) {
	for _, version := range roomVersions {
		t.Run("v"+version, func(t *testing.T) {
			s := hstest.New(t)
			owner := s.Register(t, "")
			room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": version,
				"initial_state": []map[string]any{{"type": "m.room.guest_access", "content": map[string]string{"guest_access": "can_join"}}}})
			mallory := s.Register(t, "")
			mallory.Join(t, room)
			guest := s.Guest(t)
			guest.Join(t, room)
			victim := owner.Send(t, room, "the owner's words")

			for who, c := range map[string]*hstest.Client{"member": mallory, "guest": guest} {
				c.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/send/m.room.redaction/x"+who, map[string]string{"redacts": victim})
			}
			if got := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(victim), nil); got.Get("content.body").String() != "the owner's words" {
				t.Fatalf("a refused redaction changed the event: %s", got)
			}
			// A redaction of one's own event through /send is applied by the server.
			own := mallory.Send(t, room, "regret")
			red := mallory.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.redaction/mine", map[string]string{"redacts": own}).Get("event_id").String()
			got := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(own), nil)
			if got.Get("content.body").Exists() || got.Get("unsigned.redacted_because.event_id").String() != red {
				t.Fatalf("own redaction through /send not applied: %s", got)
			}
			ev := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(red), nil)
			if ev.Get("redacts").String() != own || ev.Get("content.redacts").String() != own {
				t.Fatalf("redaction event should carry redacts at the top level and in content: %s", ev)
			}
			// The owner has the redact power and may redact others' events by /send.
			owner.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.redaction/theirs", map[string]string{"redacts": victim})
			if got := mallory.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(victim), nil); got.Get("content.body").Exists() {
				t.Fatalf("redaction with power through /send not applied: %s", got)
			}
			// Malformed or missing targets.
			owner.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/send/m.room.redaction/none", map[string]any{})
			owner.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/send/m.room.redaction/num", map[string]any{"redacts": 5})
			owner.MustErr(t, 400, "M_INVALID_PARAM", "PUT", hstest.Room(room)+"/send/m.room.redaction/bad", map[string]any{"redacts": "not-an-id"})
			// A member without power may not redact an unknown event (it might be someone
			// else's); the owner may.
			mallory.MustErr(t, 404, "M_NOT_FOUND", "PUT", hstest.Room(room)+"/send/m.room.redaction/unknown", map[string]any{"redacts": "$unknown"})
			mallory.MustErr(t, 404, "M_NOT_FOUND", "PUT", hstest.Room(room)+"/redact/$unknown2/t", map[string]any{})
		})
	}
}

// The create event may not be redacted, nor an event of another room; a state
// m.room.redaction is a redaction too, and may not redact others' events either.
func TestRedactionTargets(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	other := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	elsewhere := owner.Send(t, other, "in the other room")
	create := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.create/?format=event", nil).Get("event_id").String()
	if create == "" {
		t.Fatal("no create event ID")
	}
	owner.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(create)+"/t1", map[string]any{})
	owner.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/send/m.room.redaction/t2", map[string]any{"redacts": create})
	owner.MustErr(t, 400, "M_INVALID_PARAM", "PUT", hstest.Room(room)+"/send/m.room.redaction/t3", map[string]any{"redacts": elsewhere})
	// The state route: a redaction in disguise.
	mallory := s.Register(t, "")
	mallory.Join(t, room)
	victim := owner.Send(t, room, "keep me")
	owner.SetState(t, room, "m.room.power_levels", "", map[string]any{"users": map[string]int{owner.UserID: 100}, "state_default": 0, "events_default": 0})
	mallory.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/state/m.room.redaction/x", map[string]any{"redacts": victim})
	if got := mallory.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(victim), nil); got.Get("content.body").String() != "keep me" {
		t.Fatalf("a state redaction changed the event: %s", got)
	}
	// Replacing the create event is refused whatever the power.
	owner.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/state/m.room.create/", map[string]any{"room_version": "10"})
}

// A redacted state event's content does not live on in the next state event's
// unsigned.prev_content, on any read path.
func TestRedactedStateLeavesNoPrevContent(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})
	reader := s.Register(t, "")
	reader.Join(t, room)
	secret := owner.SetState(t, room, "m.room.topic", "", map[string]string{"topic": "the secret topic"})
	next := owner.SetState(t, room, "m.room.topic", "", map[string]string{"topic": "public topic"})
	since := reader.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(secret)+"/r1", map[string]any{})
	owner.Send(t, room, "after")

	leak := func(where string, r hstest.Response) {
		t.Helper()
		if got := r.String(); strings.Contains(got, "the secret topic") {
			t.Fatalf("%s still shows the redacted content: %s", where, got)
		}
	}
	check := func(c *hstest.Client) {
		leak("/state", c.Must(t, 200, "GET", hstest.Room(room)+"/state", nil))
		leak("/event", c.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(next), nil))
		leak("/state/m.room.topic", c.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.topic/?format=event", nil))
		leak("/messages", c.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=50", nil))
		leak("/context", c.Must(t, 200, "GET", hstest.Room(room)+"/context/"+url.PathEscape(next)+"?limit=20", nil))
		leak("initialSync", c.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil))
		leak("/events", c.Must(t, 200, "GET", eventsPath(room, "s0", "timeout=0&limit=100"), nil))
	}
	check(reader)
	check(s.Guest(t))
	leak("/sync", reader.Must(t, 200, "GET", "sync", nil))
	leak("/sync?full_state", reader.Must(t, 200, "GET", "sync?full_state=true&since="+since, nil))
	leak("global initialSync", reader.Must(t, 200, "GET", "initialSync", nil))
	// The next event still says what it replaced.
	ev := reader.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(next), nil)
	if ev.Get("unsigned.replaces_state").String() != secret || ev.Get("unsigned.prev_content").Raw != "{}" {
		t.Fatalf("next state event after the redaction: %s", ev)
	}
}

// Redacting m.room.guest_access revokes guest access (its content is stripped, and no
// guest_access means forbidden): joined guests leave, as for a new guest_access event.
func TestRedactingGuestAccessRemovesGuests(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	g.Join(t, room)
	ga := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.guest_access/?format=event", nil).Get("event_id").String()
	// The guest's own member event loses its kind: guest to a redaction; it must still go.
	mine := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.member/"+url.PathEscape(g.UserID)+"?format=event", nil).Get("event_id").String()
	owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(mine)+"/r0", map[string]any{})
	owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(ga)+"/r1", map[string]any{})
	if got := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.member/"+url.PathEscape(g.UserID), nil).Get("membership").String(); got != "leave" {
		t.Fatalf("guest still %q after guest access was redacted", got)
	}
	g.MustErr(t, 403, "M_FORBIDDEN", "POST", "join/"+url.PathEscape(room), map[string]any{})
	// The room's public view agrees.
	pr := owner.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil)
	if pr.Get(`state.#(type=="m.room.guest_access").content.guest_access`).Exists() {
		t.Fatalf("guest access still shown: %s", pr)
	}
}

// /members?at=TOKEN shows history: a peeker of a room that became world-readable may not
// read the member list of the time history was "joined".
func TestMembersAtRespectsHistoryVisibility(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	owner.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
	bob := s.Register(t, "")
	bob.Join(t, room)
	bob.Must(t, 200, "PUT", "profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]string{"displayname": "Secret Name"})
	before := owner.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	bob.Must(t, 200, "PUT", "profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]string{"displayname": "Public Name"})
	owner.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "world_readable"})
	after := owner.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	for _, p := range []*hstest.Client{s.Guest(t), s.Register(t, "")} {
		p.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/members?at="+before, nil)
		// (unsigned.prev_content may still name the old profile, as in Synapse.)
		r := p.Must(t, 200, "GET", hstest.Room(room)+"/members?at="+after, nil)
		if got := r.Get(`chunk.#(state_key==` + strconv.Quote(bob.UserID) + `).content.displayname`).String(); got != "Public Name" {
			t.Fatalf("members at a visible token: %s", r)
		}
	}
	// Members of the time read it.
	if r := bob.Must(t, 200, "GET", hstest.Room(room)+"/members?at="+before, nil); r.Get(`chunk.#(state_key==`+strconv.Quote(bob.UserID)+`).content.displayname`).String() != "Secret Name" {
		t.Fatalf("a member's view at the token: %s", r)
	}
	owner.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/members?at=s0", nil)
}

// Presence is for the user and those who share a room with them: anyone else (and any
// question about an unknown user) gets 403, as in Synapse.
func TestPresenceVisibleOnlyToRoommates(t *testing.T) {
	s := hstest.New(t)
	alice, bob, stranger := s.Register(t, ""), s.Register(t, ""), s.Register(t, "")
	alice.Must(t, 200, "PUT", "presence/"+url.PathEscape(alice.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "at the dentist"})
	path := "presence/" + url.PathEscape(alice.UserID) + "/status"
	if got := alice.Must(t, 200, "GET", path, nil); got.Get("status_msg").String() != "at the dentist" {
		t.Fatalf("own presence: %s", got)
	}
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", path, nil)
	stranger.MustErr(t, 403, "M_FORBIDDEN", "GET", "presence/"+url.PathEscape("@nobody:localhost")+"/status", nil)
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	if got := bob.Must(t, 200, "GET", path, nil); got.Get("status_msg").String() != "at the dentist" {
		t.Fatalf("roommate's view of presence: %s", got)
	}
	stranger.MustErr(t, 403, "M_FORBIDDEN", "GET", path, nil)
	// Leaving ends it; the stranger's /sync never carries alice's presence.
	bob.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", path, nil)
	if got := stranger.Must(t, 200, "GET", "sync", nil); strings.Contains(got.String(), "at the dentist") {
		t.Fatalf("a stranger's sync shows alice's presence: %s", got)
	}
}

// Repeating a completed registration's UIA session answers as the first time (a client
// retrying a lost answer), never with a new login; after a password change or a logout
// from every device the session is gone.
func TestCompletedRegistrationSessionDoesNotLogIn(t *testing.T) {
	s := hstest.New(t)
	anon := s.Anon()
	start := anon.Must(t, 401, "POST", "register", map[string]any{"username": "replay", "password": "first-pw"})
	session := start.Get("session").String()
	body := map[string]any{"auth": map[string]string{"type": "m.login.dummy", "session": session}}
	first := anon.Must(t, 200, "POST", "register", body)
	again := anon.Must(t, 200, "POST", "register", body)
	if again.Get("access_token").String() != first.Get("access_token").String() || again.Get("device_id").String() != first.Get("device_id").String() {
		t.Fatalf("a repeated registration made a new login: first %s, again %s", first, again)
	}
	u := &hstest.Client{S: s, UserID: first.Get("user_id").String(), Token: first.Get("access_token").String()}
	if n := len(u.Must(t, 200, "GET", "devices", nil).Get("devices").Array()); n != 1 {
		t.Fatalf("devices after a repeated registration: %d", n)
	}
	// A password change ends the session (and keeps this device logged in).
	u.Must(t, 200, "POST", "account/password", map[string]any{"new_password": "second-pw", "logout_devices": false,
		"auth": map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": u.UserID}, "password": "first-pw"}})
	if r := anon.Do(t, "POST", "register", body); r.Status == 200 || r.Get("access_token").Exists() {
		t.Fatalf("a completed registration session still answers after a password change: %s", r)
	}
	// Another completed session, then logout from every device.
	start = anon.Must(t, 401, "POST", "register", map[string]any{"username": "replay2", "password": "pw"})
	body = map[string]any{"auth": map[string]string{"type": "m.login.dummy", "session": start.Get("session").String()}}
	second := anon.Must(t, 200, "POST", "register", body)
	u2 := &hstest.Client{S: s, Token: second.Get("access_token").String()}
	u2.Must(t, 200, "POST", "logout/all", map[string]any{})
	if r := anon.Do(t, "POST", "register", body); r.Status == 200 || r.Get("access_token").Exists() {
		t.Fatalf("a completed registration session logs in again after logout/all: %s", r)
	}
	login := anon.Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "replay2"}, "password": "pw"})
	if n := len((&hstest.Client{S: s, Token: login.Get("access_token").String()}).Must(t, 200, "GET", "devices", nil).Get("devices").Array()); n != 1 {
		t.Fatalf("devices after logout/all and one login: %d", n)
	}
}

// The directory lists only rooms anyone may join or read (join rule public, knock or
// knock_restricted, or world-readable), as Synapse does; a published invite-only room
// shows nothing of itself, not even its name, and empty rooms are not listed.
func TestDirectoryListsOnlyOpenRooms(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	secret := u.CreateRoom(t, map[string]any{"preset": "private_chat", "visibility": "public", "name": "Secret Plans", "topic": "do not tell"})
	readable := u.CreateRoom(t, map[string]any{"preset": "private_chat", "visibility": "public", "name": "Readable",
		"initial_state": []map[string]any{{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})
	knock := u.CreateRoom(t, map[string]any{"preset": "private_chat", "visibility": "public", "name": "Knock", "room_version": "10",
		"initial_state": []map[string]any{{"type": "m.room.join_rules", "content": map[string]string{"join_rule": "knock"}}}})
	space := u.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "A space", "creation_content": map[string]string{"type": "m.space"}})
	empty := u.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Empty"})
	u.Must(t, 200, "POST", hstest.Room(empty)+"/leave", map[string]any{})

	for _, c := range []*hstest.Client{s.Anon(), s.Register(t, "")} {
		r := c.Must(t, 200, "GET", "publicRooms", nil)
		if strings.Contains(r.String(), "Secret Plans") || strings.Contains(r.String(), secret) || strings.Contains(r.String(), empty) {
			t.Fatalf("the directory lists a closed or empty room: %s", r)
		}
		for _, want := range []string{readable, knock, space} {
			if !strings.Contains(r.String(), want) {
				t.Fatalf("the directory misses %s: %s", want, r)
			}
		}
		if r.Get("total_room_count_estimate").Int() != 3 {
			t.Fatalf("estimate: %s", r)
		}
	}
	spaces := u.Must(t, 200, "POST", "publicRooms", map[string]any{"filter": map[string]any{"room_types": []string{"m.space"}}})
	if n := len(spaces.Get("chunk").Array()); n != 1 || spaces.Get("chunk.0.room_id").String() != space {
		t.Fatalf("room_types [m.space]: %s", spaces)
	}
	plain := u.Must(t, 200, "POST", "publicRooms", map[string]any{"filter": map[string]any{"room_types": []any{nil}}})
	if n := len(plain.Get("chunk").Array()); n != 2 {
		t.Fatalf("room_types [null]: %s", plain)
	}
}

// A transaction ID is scoped to the device and the endpoint: the same ID on /send and on
// /redact, or on /send with another event type, names different requests (the spec's
// "Transaction identifiers"), while a retransmission on the same path returns the same event.
func TestTransactionIDsAreScopedToTheEndpoint(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	msg := alice.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.message/same", map[string]string{"msgtype": "m.text", "body": "hello"}).Get("event_id").String()
	again := alice.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.message/same", map[string]string{"msgtype": "m.text", "body": "hello"}).Get("event_id").String()
	if again != msg {
		t.Fatalf("a retransmission made a second event: %s, %s", msg, again)
	}
	reaction := alice.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.reaction/same", map[string]any{
		"m.relates_to": map[string]string{"rel_type": "m.annotation", "event_id": msg, "key": "👍"}}).Get("event_id").String()
	if reaction == msg {
		t.Fatal("the same transaction ID for another event type returned the message")
	}
	redaction := alice.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(msg)+"/same", map[string]any{}).Get("event_id").String()
	if redaction == msg || redaction == reaction {
		t.Fatal("/redact with a transaction ID used on /send did not redact")
	}
	ev := alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(msg), nil)
	if ev.Get("content.body").Exists() || !ev.Get("unsigned.redacted_because").Exists() {
		t.Fatalf("the message was not redacted: %s", ev)
	}
	if again := alice.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(msg)+"/same", map[string]any{}).Get("event_id").String(); again != redaction {
		t.Fatal("a retransmitted redaction made a second event")
	}
}
