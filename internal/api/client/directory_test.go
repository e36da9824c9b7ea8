package client_test

import (
	"net/url"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

func TestPublicRooms(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	wr := u.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Readable", "topic": "open",
		"initial_state": []map[string]any{
			{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}},
			{"type": "m.room.guest_access", "content": map[string]string{"guest_access": "can_join"}},
			{"type": "m.room.avatar", "content": map[string]string{"url": "mxc://example.org/abc"}},
		}})
	plain := u.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Plain", "room_alias_name": "plain"})
	hidden := u.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "Unlisted"})
	s.Register(t, "").Join(t, plain)

	r := s.Anon().Must(t, 200, "GET", "publicRooms", nil)
	byID := map[string]string{}
	for _, e := range r.Get("chunk").Array() {
		byID[e.Get("room_id").String()] = e.Raw
	}
	if _, ok := byID[hidden]; ok || len(byID) != 2 {
		t.Fatalf("directory: %s", r)
	}
	w := r.Get("chunk.#(room_id==" + `"` + wr + `"` + ")")
	if !w.Get("world_readable").Bool() || !w.Get("guest_can_join").Bool() || w.Get("avatar_url").String() != "mxc://example.org/abc" ||
		w.Get("name").String() != "Readable" || w.Get("num_joined_members").Int() != 1 {
		t.Fatalf("world-readable entry: %s", w.Raw)
	}
	p := r.Get("chunk.#(room_id==" + `"` + plain + `"` + ")")
	if p.Get("world_readable").Bool() || p.Get("guest_can_join").Bool() || p.Get("num_joined_members").Int() != 2 || p.Get("canonical_alias").String() != "#plain:localhost" {
		t.Fatalf("plain entry: %s", p.Raw)
	}
	if r.Get("chunk.0.room_id").String() != plain {
		t.Fatal("rooms with more members come first")
	}
	// Pagination and search.
	page := u.Must(t, 200, "POST", "publicRooms", map[string]any{"limit": 1})
	if len(page.Get("chunk").Array()) != 1 || page.Get("next_batch").String() == "" {
		t.Fatalf("page 1: %s", page)
	}
	page2 := u.Must(t, 200, "POST", "publicRooms", map[string]any{"limit": 1, "since": page.Get("next_batch").String()})
	if len(page2.Get("chunk").Array()) != 1 || page2.Get("chunk.0.room_id").String() == page.Get("chunk.0.room_id").String() {
		t.Fatalf("page 2: %s", page2)
	}
	found := u.Must(t, 200, "POST", "publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "readab"}})
	if len(found.Get("chunk").Array()) != 1 || found.Get("chunk.0.room_id").String() != wr {
		t.Fatalf("search: %s", found)
	}
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", "publicRooms?since=zz", nil)
	// Changing a room's state changes its entry.
	u.SetState(t, plain, "m.room.guest_access", "", map[string]string{"guest_access": "can_join"})
	r = s.Anon().Must(t, 200, "GET", "publicRooms", nil)
	if !r.Get("chunk.#(room_id==" + `"` + plain + `"` + ").guest_can_join").Bool() {
		t.Fatal("guest_can_join not updated")
	}
	// Unpublishing.
	u.Must(t, 200, "PUT", "directory/list/room/"+url.PathEscape(plain), map[string]string{"visibility": "private"})
	if strings.Contains(s.Anon().Must(t, 200, "GET", "publicRooms", nil).String(), plain) {
		t.Fatal("unpublished room still listed")
	}
	stranger := s.Register(t, "")
	stranger.MustErr(t, 403, "M_FORBIDDEN", "PUT", "directory/list/room/"+url.PathEscape(wr), map[string]string{"visibility": "private"})
}

func TestAliases(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	other := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	alias := url.PathEscape("#home:localhost")
	u.Must(t, 200, "PUT", "directory/room/"+alias, map[string]string{"room_id": room})
	u.MustErr(t, 409, "M_UNKNOWN", "PUT", "directory/room/"+alias, map[string]string{"room_id": room})
	if got := s.Anon().Must(t, 200, "GET", "directory/room/"+alias, nil); got.Get("room_id").String() != room || got.Get("servers.0").String() != "localhost" {
		t.Fatalf("resolve: %s", got)
	}
	if got := u.Must(t, 200, "GET", hstest.Room(room)+"/aliases", nil); got.Get("aliases.0").String() != "#home:localhost" {
		t.Fatalf("room aliases: %s", got)
	}
	other.MustErr(t, 403, "M_FORBIDDEN", "PUT", "directory/room/"+url.PathEscape("#x:localhost"), map[string]string{"room_id": room})
	u.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "directory/room/"+url.PathEscape("#x:elsewhere.org"), map[string]string{"room_id": room})
	u.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "directory/room/nohash", map[string]string{"room_id": room})
	other.MustErr(t, 403, "M_FORBIDDEN", "DELETE", "directory/room/"+alias, nil)
	u.SetState(t, room, "m.room.canonical_alias", "", map[string]string{"alias": "#home:localhost"})
	u.MustErr(t, 400, "M_BAD_ALIAS", "PUT", hstest.Room(room)+"/state/m.room.canonical_alias/", map[string]string{"alias": "#nowhere:localhost"})
	u.Must(t, 200, "DELETE", "directory/room/"+alias, nil)
	s.Anon().MustErr(t, 404, "M_NOT_FOUND", "GET", "directory/room/"+alias, nil)
}

func TestErrorBodies(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	anon := s.Anon()
	anon.MustErr(t, 404, "M_UNRECOGNIZED", "GET", "/_matrix/client/v3/no/such/endpoint", nil)
	anon.MustErr(t, 404, "M_UNRECOGNIZED", "GET", "/nothing-here", nil)
	anon.MustErr(t, 405, "M_UNRECOGNIZED", "DELETE", "/_matrix/client/v3/login", nil)
	u.MustErr(t, 405, "M_UNRECOGNIZED", "POST", "sync", nil)
	u.MustErr(t, 400, "M_NOT_JSON", "POST", "createRoom", "\xff\xfe")
	u.MustErr(t, 400, "M_NOT_JSON", "POST", "createRoom", `{"a":1,"a":2}`)
	u.MustErr(t, 400, "M_BAD_JSON", "POST", "createRoom", `"string"`)
	u.MustErr(t, 400, "M_BAD_JSON", "POST", "createRoom", `{"invite":"not a list"}`)
	u.MustErr(t, 413, "M_TOO_LARGE", "POST", "createRoom", `{"name":"`+strings.Repeat("x", 300<<10)+`"}`)
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", hstest.Room("!r:localhost")+"/members?membership=joined", nil)
	u.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room("!unknown:localhost")+"/members", nil)
	u.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room("!unknown:localhost")+"/messages?dir=b", nil)
	u.MustErr(t, 403, "M_FORBIDDEN", "PUT", "presence/"+url.PathEscape("@someone:localhost")+"/status", map[string]any{"presence": "online"})
	u.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "presence/"+url.PathEscape(u.UserID)+"/status", map[string]any{"presence": "dancing"})
	// Nothing was created by any of that.
	if n := len(u.Must(t, 200, "GET", "joined_rooms", nil).Get("joined_rooms").Array()); n != 0 {
		t.Fatalf("bad requests created %d rooms", n)
	}
}

// A path with dot or empty segments gets 404 M_UNRECOGNIZED, as from Synapse, not the mux's
// 307 to the cleaned path (sytest checks it).
func TestUncleanPaths(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	// Dot segments and empty segments are not cleaned into another endpoint (no 307 to it).
	for _, p := range []string{"/_matrix/client/v3/../v3/account/whoami", "/_matrix/client/v3/./account/whoami",
		"/_matrix/client/v3/account/whoami/..", "/_matrix//client/v3/account/whoami", "/_matrix/client/v3/rooms/%21a:x/../../sync"} {
		u.MustErr(t, 404, "M_UNRECOGNIZED", "GET", p, nil)
	}
	// An escaped "../" is data inside one segment, such as a state key.
	room := u.CreateRoom(t, nil)
	u.Must(t, 200, "PUT", hstest.Room(room)+"/state/org.example.path/..%2Fup", map[string]any{"k": 1})
	if r := u.Must(t, 200, "GET", hstest.Room(room)+"/state/org.example.path/..%2Fup", nil); r.Get("k").Int() != 1 {
		t.Fatalf("state under an escaped dot-dot key: %s", r)
	}
}

func TestMembersAndJoinedMembers(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	bob := s.Register(t, "")
	eve := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	at := u.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	bob.Join(t, room)
	u.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": eve.UserID})
	all := u.Must(t, 200, "GET", hstest.Room(room)+"/members", nil)
	if len(all.Get("chunk").Array()) != 3 {
		t.Fatalf("members: %s", all)
	}
	if n := len(u.Must(t, 200, "GET", hstest.Room(room)+"/members?membership=join", nil).Get("chunk").Array()); n != 2 {
		t.Fatalf("membership=join: %d", n)
	}
	if n := len(u.Must(t, 200, "GET", hstest.Room(room)+"/members?not_membership=join", nil).Get("chunk").Array()); n != 1 {
		t.Fatalf("not_membership=join: %d", n)
	}
	if n := len(u.Must(t, 200, "GET", hstest.Room(room)+"/members?at="+at, nil).Get("chunk").Array()); n != 1 {
		t.Fatalf("members at an earlier token: %d", n)
	}
	jm := u.Must(t, 200, "GET", hstest.Room(room)+"/joined_members", nil)
	if !jm.Get("joined."+escapeKey(bob.UserID)).Exists() || jm.Get("joined."+escapeKey(eve.UserID)).Exists() {
		t.Fatalf("joined_members: %s", jm)
	}
	eve.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/joined_members", nil)
}
