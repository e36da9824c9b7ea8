package client_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

// Every route not opened to guests answers a guest with 403 M_GUEST_ACCESS_FORBIDDEN,
// decided before the handler runs (so the request body does not matter).
func TestGuestRouteWalk(t *testing.T) {
	s := hstest.New(t)
	g := s.Guest(t)
	wild := regexp.MustCompile(`\{[^}]+\}`)
	checked := 0
	for _, rt := range s.Server.API().Routes() {
		if rt.GuestsAllowed || rt.Public {
			continue
		}
		path := wild.ReplaceAllStringFunc(rt.Pattern, func(w string) string {
			switch {
			case strings.Contains(w, "room"):
				return url.PathEscape("!r:localhost")
			case strings.Contains(w, "user"):
				return url.PathEscape(g.UserID)
			}
			return "x"
		})
		r := g.Do(t, rt.Method, path, map[string]any{})
		if r.Status != 403 || r.Get("errcode").String() != "M_GUEST_ACCESS_FORBIDDEN" {
			t.Errorf("%s %s (%s): got %s", rt.Method, path, rt.Pattern, r)
		}
		checked++
	}
	if checked < 60 {
		t.Fatalf("only %d guest-forbidden routes walked", checked)
	}
	// And a sample of the spec's guest list works for guests.
	for _, p := range []string{"account/whoami", "devices", "joined_rooms", "capabilities", "publicRooms", "sync?timeout=0"} {
		g.Must(t, 200, "GET", p, nil)
	}
}

func TestGuestJoinRules(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	g := s.Guest(t)
	// public_chat has no guest_access event: guests may not join (absent means forbidden).
	pub := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	g.MustErr(t, 403, "M_FORBIDDEN", "POST", "join/"+url.PathEscape(pub), map[string]any{})
	owner.SetState(t, pub, "m.room.guest_access", "", map[string]string{"guest_access": "can_join"})
	g.Join(t, pub)
	member := g.Must(t, 200, "GET", hstest.Room(pub)+"/state/m.room.member/"+url.PathEscape(g.UserID), nil)
	if member.Get("kind").String() != "guest" || member.Get("membership").String() != "join" {
		t.Fatalf("guest member event: %s", member)
	}
	// A joined guest may send messages and set its display name.
	g.Send(t, pub, "hello from a guest")
	last := owner.Must(t, 200, "GET", hstest.Room(pub)+"/messages?dir=b&limit=1", nil)
	if last.Get("chunk.0.sender").String() != g.UserID {
		t.Fatalf("guest message: %s", last)
	}
	g.Must(t, 200, "PUT", "profile/"+url.PathEscape(g.UserID)+"/displayname", map[string]any{"displayname": "Visitor"})
	if got := g.Must(t, 200, "GET", "profile/"+url.PathEscape(g.UserID)+"/displayname", nil).Get("displayname").String(); got != "Visitor" {
		t.Fatalf("guest displayname %q", got)
	}
	if got := g.Must(t, 200, "GET", hstest.Room(pub)+"/state/m.room.member/"+url.PathEscape(g.UserID), nil).Get("displayname").String(); got != "Visitor" {
		t.Fatalf("member event not updated with the displayname: %q", got)
	}
	g.MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "PUT", "profile/"+url.PathEscape(g.UserID)+"/avatar_url", map[string]any{"avatar_url": "mxc://a/b"})
	// A guest that is not joined may not send.
	other := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	g.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(other)+"/send/m.room.message/t1", map[string]any{"body": "x"})
	// Revoking guest access makes joined guests leave.
	owner.SetState(t, pub, "m.room.guest_access", "", map[string]string{"guest_access": "forbidden"})
	if got := owner.Must(t, 200, "GET", hstest.Room(pub)+"/state/m.room.member/"+url.PathEscape(g.UserID), nil).Get("membership").String(); got != "leave" {
		t.Fatalf("guest not kicked on revocation: %s", got)
	}
	g.MustErr(t, 403, "M_FORBIDDEN", "POST", "join/"+url.PathEscape(pub), map[string]any{})
}

func TestGuestUpgrade(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	g := s.Guest(t)
	g2 := s.Guest(t)
	room := owner.CreateRoom(t, map[string]any{"preset": "private_chat"})
	owner.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": g.UserID})
	g.Join(t, room)
	g.Must(t, 200, "PUT", "profile/"+url.PathEscape(g.UserID)+"/displayname", map[string]any{"displayname": "Kept"})
	local := localpart(g.UserID)
	anon := s.Anon()
	// Another guest may not take over this one.
	r := anon.Do(t, "POST", "register", map[string]any{"username": local, "password": "pw", "guest_access_token": g2.Token, "auth": map[string]any{"type": "m.login.dummy"}})
	if r.Status < 400 || r.Status >= 500 {
		t.Fatalf("guest2 upgrading guest1: %s", r)
	}
	// Without UIA the first call is the usual 401 challenge.
	anon.Must(t, 401, "POST", "register", map[string]any{"username": local, "password": "pw", "guest_access_token": g.Token})
	up := anon.Must(t, 200, "POST", "register", map[string]any{"username": local, "password": "pw", "guest_access_token": g.Token, "auth": map[string]any{"type": "m.login.dummy"}})
	if up.Get("user_id").String() != g.UserID || up.Get("access_token").String() == "" {
		t.Fatalf("upgrade: %s", up)
	}
	g.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
	full := &hstest.Client{S: s, Token: up.Get("access_token").String(), UserID: g.UserID}
	if w := full.Must(t, 200, "GET", "account/whoami", nil); w.Get("is_guest").Bool() {
		t.Fatalf("still a guest: %s", w)
	}
	if rooms := full.Must(t, 200, "GET", "joined_rooms", nil).Get("joined_rooms").Array(); len(rooms) != 1 || rooms[0].String() != room {
		t.Fatalf("memberships not kept: %v", rooms)
	}
	if got := full.Must(t, 200, "GET", "profile/"+url.PathEscape(g.UserID)+"/displayname", nil).Get("displayname").String(); got != "Kept" {
		t.Fatalf("displayname not kept: %q", got)
	}
	full.CreateRoom(t, nil) // a full account may do what guests may not
	anon.Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": local, "password": "pw"})
}
