package client_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

func TestRateLimits(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) {
		c.RateLimit = "on"
		c.UserRequestsPerS, c.UserRequestsBurst = 1, 5
		c.RegisterPerSec, c.RegisterBurst = 0.1, 3
		c.MaxPollsPerUser = 2
	})
	anon := s.Anon()
	// Guest registration per IP.
	var tok string
	for i := 0; i < 3; i++ {
		tok = anon.Must(t, 200, "POST", "register?kind=guest", map[string]any{}).Get("access_token").String()
	}
	r := anon.MustErr(t, 429, "M_LIMIT_EXCEEDED", "POST", "register?kind=guest", map[string]any{})
	if r.Get("retry_after_ms").Int() <= 0 {
		t.Fatalf("429 without retry_after_ms: %s", r)
	}
	// Per-user request bucket.
	g := &hstest.Client{S: s, Token: tok}
	limited := false
	for i := 0; i < 10 && !limited; i++ {
		r := g.Do(t, "GET", "account/whoami", nil)
		limited = r.Status == 429 && r.Get("errcode").String() == "M_LIMIT_EXCEEDED"
	}
	if !limited {
		t.Fatal("per-user limit never applied")
	}
}

func TestLongPollCap(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) {
		c.RateLimit = "on"
		c.MaxPollsPerUser = 2
	})
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 2; i++ {
		go g.DoCtx(ctx, t, "GET", eventsPath(room, "", "timeout=60000"), nil)
	}
	s.WaitParked(t, 2)
	g.MustErr(t, 429, "M_LIMIT_EXCEEDED", "GET", eventsPath(room, "", "timeout=60000"), nil)
	// A poll that does not wait is not counted.
	g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil)
	cancel()
	s.WaitUnparked(t)
	g.Must(t, 200, "GET", eventsPath(room, "", "timeout=10"), nil)
}

// TestBadInputSweep sends many malformed requests across the API: each must get a 4xx
// Matrix error (never a 5xx), and none may change anything.
func TestBadInputSweep(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	room := u.WorldReadableRoom(t)
	eventID := u.Send(t, room, "anchor")
	// Not JSON objects at all: every endpoint that reads a body refuses them.
	bodiesBad := []string{"", "{", "[]", "null", `"x"`, "1", "\xff\xfe", `{"a":1,"a":2}`, strings.Repeat("[", 50000),
		`{"n":NaN}`, `{"s":"\ud800"}`, "{\"s\":\"\x00\"}", "{\"s\":\"\xc3\x28\"}", `{"a":1}{"b":2}`, strings.Repeat(" ", 10) + "{"}
	// Objects with odd values: endpoints that read those fields refuse them, others may
	// ignore them; none may fail.
	bodiesOdd := []string{`{"msgtype":1.5}`, `{"n":1e400}`, `{"n":9007199254740993}`, `{"body":` + strings.Repeat(`{"a":`, 600) + `1` + strings.Repeat("}", 600) + `}`,
		`{"user_id":5}`, `{"room_id":["x"]}`, `{"display_name":{"x":1}}`, `{"typing":"yes"}`, `{"presence":true}`, `{"displayname":` + strings.Repeat(`"`, 1) + strings.Repeat("x", 5000) + `"}`}
	endpoints := []struct{ method, path string }{
		{"POST", "createRoom"}, {"POST", "register"}, {"POST", "login"},
		{"PUT", hstest.Room(room) + "/send/m.room.message/bad"},
		{"PUT", hstest.Room(room) + "/state/m.room.topic/"},
		{"PUT", hstest.Room(room) + "/typing/" + url.PathEscape(u.UserID)},
		{"POST", hstest.Room(room) + "/receipt/m.read/" + url.PathEscape(eventID)},
		{"POST", hstest.Room(room) + "/invite"}, {"POST", hstest.Room(room) + "/kick"},
		{"PUT", "profile/" + url.PathEscape(u.UserID) + "/displayname"},
		{"PUT", "presence/" + url.PathEscape(u.UserID) + "/status"},
		{"PUT", "user/" + url.PathEscape(u.UserID) + "/account_data/x.y"},
		{"POST", "user/" + url.PathEscape(u.UserID) + "/filter"},
		{"PUT", "directory/room/" + url.PathEscape("#x:localhost")},
		{"POST", "publicRooms"}, {"POST", "account/password"}, {"PUT", "devices/" + u.DeviceID},
	}
	queries := []string{
		"events?room_id=" + url.QueryEscape(room) + "&from=s-5", "events?room_id=" + url.QueryEscape(room) + "&limit=1e3",
		"events?room_id=" + url.QueryEscape(room) + "&timeout=forever", "events?room_id=" + url.QueryEscape(room) + "&from=%ff",
		"sync?since=s1_x", "sync?filter=%7B", "sync?filter=99999999999999999999", "sync?timeout=-x", "sync?full_state=maybe",
		hstest.Room(room) + "/messages?dir=up", hstest.Room(room) + "/messages?limit=-1", hstest.Room(room) + "/messages?from=t-1-2",
		hstest.Room(room) + "/messages?filter=%5B%5D", hstest.Room(room) + "/members?at=garbage",
		hstest.Room(room) + "/context/" + url.PathEscape(eventID) + "?limit=x", "publicRooms?limit=-3", "publicRooms?since=x",
		"register/available?username=" + url.QueryEscape("Bad Name"), hstest.Room("not-a-room") + "/messages",
		"initialSync?limit=z", "rooms/%21x%3Alocalhost/initialSync?limit=-1",
	}
	before := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=1000", nil).Get("chunk.#").Int()
	tried := 0
	for _, ep := range endpoints {
		for _, b := range bodiesBad {
			if b == "" && strings.Contains(ep.path, "/receipt/") {
				continue // the receipt body is optional
			}
			r := u.Do(t, ep.method, ep.path, b)
			tried++
			if r.Status >= 500 || r.Status < 400 || r.Get("errcode").String() == "" {
				t.Errorf("%s %s with %.30q: %s", ep.method, ep.path, b, r)
			}
		}
	}
	for _, q := range queries {
		r := u.Do(t, "GET", q, nil)
		tried++
		if r.Status < 400 || r.Status >= 500 || r.Get("errcode").String() == "" {
			t.Errorf("GET %s: %s", q, r)
		}
	}
	// Repeated parameters: the first value counts.
	u.Must(t, 200, "GET", "events?timeout=0&room_id="+url.QueryEscape(room)+"&room_id=!other:localhost", nil)
	tried++
	after := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=1000", nil).Get("chunk.#").Int()
	if before != after {
		t.Fatalf("bad requests changed the room: %d events before, %d after", before, after)
	}
	for _, ep := range endpoints {
		for _, b := range bodiesOdd {
			r := u.Do(t, ep.method, ep.path, b)
			tried++
			uia := r.Status == 401 && r.Get("flows").Exists()
			if r.Status >= 500 || (r.Status >= 400 && r.Get("errcode").String() == "" && !uia) {
				t.Errorf("%s %s with %.30q: %s", ep.method, ep.path, b, r)
			}
		}
	}
	t.Logf("%d bad requests tried", tried)
	_ = fmt.Sprint
}
