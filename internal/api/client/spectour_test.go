package client_test

import (
	"net/url"
	"testing"

	"porthole/internal/hstest"
)

// TestSpecTour calls every route once or more with a valid request, in states that give
// each response its optional parts (unset and set profiles, invites, leaves, redactions,
// receipts, typing, tags, limited timelines), so that the spec check of hstest's client
// sees every response shape the server can give. The assertions here are the few that the
// schemas cannot make; the schemas do the rest.
func TestSpecTour(t *testing.T) {
	s := hstest.New(t)
	anon := s.Anon()
	anon.Must(t, 200, "GET", "/_matrix/client/versions", nil)
	anon.Must(t, 200, "GET", "/.well-known/matrix/client", nil)
	anon.Must(t, 200, "GET", "login", nil)
	anon.Must(t, 200, "GET", "register/available?username=nobodyyet", nil)

	alice := s.Register(t, "tour-alice")
	bob := s.Register(t, "tour-bob")
	alice.Must(t, 200, "GET", "capabilities", nil)
	alice.Must(t, 200, "GET", "account/whoami", nil)

	// Profiles: before anything is set, set, and with the avatar removed again.
	alice.Must(t, 200, "GET", "profile/"+url.PathEscape(alice.UserID), nil)
	alice.Must(t, 200, "PUT", "profile/"+url.PathEscape(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice"})
	alice.Must(t, 200, "PUT", "profile/"+url.PathEscape(alice.UserID)+"/avatar_url", map[string]any{"avatar_url": "mxc://localhost/alice"})
	p := alice.Must(t, 200, "GET", "profile/"+url.PathEscape(alice.UserID), nil)
	if p.Get("avatar_url").String() != "mxc://localhost/alice" || p.Get("displayname").String() != "Alice" {
		t.Fatalf("profile: %s", p)
	}
	alice.Must(t, 200, "GET", "profile/"+url.PathEscape(alice.UserID)+"/displayname", nil)
	alice.Must(t, 200, "DELETE", "profile/"+url.PathEscape(alice.UserID)+"/avatar_url", nil)
	if p := alice.Must(t, 200, "GET", "profile/"+url.PathEscape(alice.UserID), nil); p.Get("avatar_url").Exists() {
		t.Fatalf("a removed avatar is still in the profile: %s", p)
	}
	bob.Must(t, 200, "DELETE", "profile/"+url.PathEscape(bob.UserID)+"/displayname", nil)
	bob.Must(t, 200, "GET", "profile/"+url.PathEscape(bob.UserID), nil)

	// A room with a bit of everything.
	room := alice.WorldReadableRoom(t)
	alice.SetState(t, room, "m.room.name", "", map[string]any{"name": "Tour"})
	alice.SetState(t, room, "m.room.topic", "", map[string]any{"topic": "everything"})
	bob.Join(t, room)
	first := alice.Send(t, room, "first")
	second := bob.Send(t, room, "second")
	alice.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(first)+"/r1", map[string]any{"reason": "tour"})
	alice.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(alice.UserID), map[string]any{"typing": true, "timeout": 30000})
	bob.Must(t, 200, "POST", hstest.Room(room)+"/read_markers", map[string]any{"m.fully_read": second, "m.read": second})
	bob.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read/"+url.PathEscape(second), map[string]any{})
	bob.Must(t, 200, "PUT", "user/"+url.PathEscape(bob.UserID)+"/rooms/"+url.PathEscape(room)+"/account_data/org.example.note", map[string]any{"note": "hi"})
	bob.Must(t, 200, "GET", "user/"+url.PathEscape(bob.UserID)+"/rooms/"+url.PathEscape(room)+"/account_data/org.example.note", nil)
	bob.Must(t, 200, "PUT", "user/"+url.PathEscape(bob.UserID)+"/rooms/"+url.PathEscape(room)+"/tags/m.favourite", map[string]any{"order": 0.5})
	bob.Must(t, 200, "PUT", "user/"+url.PathEscape(bob.UserID)+"/rooms/"+url.PathEscape(room)+"/tags/u.work", map[string]any{})
	bob.Must(t, 200, "GET", "user/"+url.PathEscape(bob.UserID)+"/rooms/"+url.PathEscape(room)+"/tags", nil)
	bob.Must(t, 200, "DELETE", "user/"+url.PathEscape(bob.UserID)+"/rooms/"+url.PathEscape(room)+"/tags/u.work", nil)
	bob.Must(t, 200, "PUT", "user/"+url.PathEscape(bob.UserID)+"/account_data/m.direct", map[string]any{alice.UserID: []string{room}})
	bob.Must(t, 200, "GET", "user/"+url.PathEscape(bob.UserID)+"/account_data/m.direct", nil)
	bob.Must(t, 200, "PUT", "presence/"+url.PathEscape(bob.UserID)+"/status", map[string]any{"presence": "online"})
	alice.Must(t, 200, "GET", "presence/"+url.PathEscape(bob.UserID)+"/status", nil)
	alice.Must(t, 200, "PUT", "presence/"+url.PathEscape(alice.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "touring"})
	alice.Must(t, 200, "GET", "presence/"+url.PathEscape(alice.UserID)+"/status", nil)

	// An invite, a left room and a room with many messages for limited timelines.
	private := alice.CreateRoom(t, map[string]any{"name": "Private", "invite": []string{bob.UserID}})
	left := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, left)
	bob.Send(t, left, "bye")
	bob.Must(t, 200, "POST", hstest.Room(left)+"/leave", map[string]any{})
	for i := range 5 {
		alice.Send(t, room, "more "+string(rune('a'+i)))
	}

	// Every reading endpoint, as both users.
	for _, c := range []*hstest.Client{alice, bob} {
		sync := c.Must(t, 200, "GET", "sync?timeout=0", nil)
		next := sync.Get("next_batch").String()
		c.Must(t, 200, "GET", "sync?timeout=0&full_state=true&filter="+url.QueryEscape(`{"room":{"timeline":{"limit":1},"include_leave":true,"state":{"lazy_load_members":true}}}`), nil)
		c.Must(t, 200, "GET", "sync?timeout=0&since="+url.QueryEscape(next), nil)
		c.Must(t, 200, "GET", "initialSync?limit=3", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/initialSync?limit=3", nil)
		c.Must(t, 200, "GET", "events?timeout=0&from="+url.QueryEscape(next), nil)
		c.Must(t, 200, "GET", "joined_rooms", nil)
		msgs := c.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=4", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&from="+url.QueryEscape(msgs.Get("end").String()), nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=f&limit=100&filter="+url.QueryEscape(`{"lazy_load_members":true}`), nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/context/"+url.PathEscape(second)+"?limit=2", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(first), nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/state", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.name", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.member/"+url.PathEscape(c.UserID), nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/members", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/members?membership=join", nil)
		c.Must(t, 200, "GET", hstest.Room(room)+"/joined_members", nil)
		c.Must(t, 200, "GET", "devices", nil)
		c.Must(t, 200, "GET", "devices/"+url.PathEscape(c.DeviceID), nil)
		c.Must(t, 200, "GET", "pushrules/", nil)
		c.Must(t, 200, "GET", "pushrules/global/", nil)
		c.Must(t, 200, "GET", "pushrules/global/override/.m.rule.master", nil)
		c.Must(t, 200, "GET", "pushrules/global/override/.m.rule.master/enabled", nil)
		c.Must(t, 200, "GET", "pushrules/global/override/.m.rule.master/actions", nil)
	}
	inv := bob.Must(t, 200, "GET", "sync?timeout=0", nil)
	if !inv.Get("rooms.invite." + escapeKey(private) + ".invite_state.events.0").Exists() {
		t.Fatalf("no invite_state for the invited room: %s", inv)
	}
	leaveSync := bob.Must(t, 200, "GET", "sync?timeout=0&filter="+url.QueryEscape(`{"room":{"include_leave":true}}`), nil)
	if !leaveSync.Get("rooms.leave." + escapeKey(left)).Exists() {
		t.Fatalf("no leave section for the room bob left: %s", leaveSync)
	}
	bob.Must(t, 200, "GET", hstest.Room(left)+"/messages?dir=b", nil)
	bob.Must(t, 200, "GET", hstest.Room(left)+"/initialSync", nil)

	// The directory, aliases and filters.
	alice.Must(t, 200, "PUT", "directory/room/"+url.PathEscape("#tour:"+s.Name), map[string]any{"room_id": room})
	anon.Must(t, 200, "GET", "directory/room/"+url.PathEscape("#tour:"+s.Name), nil)
	alice.Must(t, 200, "GET", hstest.Room(room)+"/aliases", nil)
	alice.Must(t, 200, "PUT", "directory/list/room/"+url.PathEscape(room), map[string]any{"visibility": "public"})
	anon.Must(t, 200, "GET", "directory/list/room/"+url.PathEscape(room), nil)
	anon.Must(t, 200, "GET", "publicRooms?limit=1", nil)
	alice.Must(t, 200, "POST", "publicRooms", map[string]any{"limit": 5, "filter": map[string]any{"generic_search_term": "tour"}})
	f := alice.Must(t, 200, "POST", "user/"+url.PathEscape(alice.UserID)+"/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 2}}})
	alice.Must(t, 200, "GET", "user/"+url.PathEscape(alice.UserID)+"/filter/"+f.Get("filter_id").String(), nil)
	alice.Must(t, 200, "DELETE", "directory/room/"+url.PathEscape("#tour:"+s.Name), nil)

	// Devices: a second login, renamed, then deleted through user-interactive auth.
	login := anon.Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "tour-bob"}, "password": "pw-tour-bob"})
	dev := login.Get("device_id").String()
	bob.Must(t, 200, "PUT", "devices/"+url.PathEscape(dev), map[string]any{"display_name": "phone"})
	uia := bob.Must(t, 401, "POST", "delete_devices", map[string]any{"devices": []string{dev}})
	bob.Must(t, 200, "POST", "delete_devices", map[string]any{"devices": []string{dev}, "auth": map[string]any{
		"type": "m.login.password", "session": uia.Get("session").String(),
		"identifier": map[string]any{"type": "m.id.user", "user": bob.UserID}, "password": "pw-tour-bob"}})

	// Leaving for good.
	bob.Must(t, 200, "POST", hstest.Room(private)+"/leave", map[string]any{})
	bob.Must(t, 200, "POST", hstest.Room(private)+"/forget", map[string]any{})
	alice.Must(t, 200, "POST", "logout", map[string]any{})
	uia = bob.Must(t, 401, "POST", "account/deactivate", map[string]any{})
	bob.Must(t, 200, "POST", "account/deactivate", map[string]any{"auth": map[string]any{
		"type": "m.login.password", "session": uia.Get("session").String(),
		"identifier": map[string]any{"type": "m.id.user", "user": bob.UserID}, "password": "pw-tour-bob"}})
}
