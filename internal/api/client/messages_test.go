package client_test

import (
	"fmt"
	"net/url"
	"testing"

	"porthole/internal/hstest"
)

func bodies(r hstest.Response, path string) []string {
	var out []string
	for _, e := range r.Get(path).Array() {
		if e.Get("type").String() == "m.room.message" {
			out = append(out, e.Get("content.body").String())
		}
	}
	return out
}

func TestMessagesPagination(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	for i := 0; i < 25; i++ {
		u.Send(t, room, fmt.Sprintf("m%02d", i))
	}
	// Backwards from the end in pages of 10 until the start: every message once, newest first.
	var seen []string
	from := ""
	for page := 0; page < 10; page++ {
		q := "dir=b&limit=10&filter=" + url.QueryEscape(`{"types":["m.room.message"]}`)
		if from != "" {
			q += "&from=" + from
		}
		r := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?"+q, nil)
		seen = append(seen, bodies(r, "chunk")...)
		if r.Get("start").String() == "" {
			t.Fatalf("no start: %s", r)
		}
		if !r.Get("end").Exists() {
			break
		}
		from = r.Get("end").String()
	}
	if len(seen) != 25 {
		t.Fatalf("backwards got %d messages: %v", len(seen), seen)
	}
	for i, b := range seen {
		if want := fmt.Sprintf("m%02d", 24-i); b != want {
			t.Fatalf("backwards order: %v", seen)
		}
	}
	// Forwards from the start.
	seen = nil
	from = ""
	for page := 0; page < 20; page++ {
		q := "dir=f&limit=7"
		if from != "" {
			q += "&from=" + from
		}
		r := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?"+q, nil)
		seen = append(seen, bodies(r, "chunk")...)
		if !r.Get("end").Exists() {
			break
		}
		from = r.Get("end").String()
	}
	if len(seen) != 25 || seen[0] != "m00" || seen[24] != "m24" {
		t.Fatalf("forwards: %v", seen)
	}
	// A backward page's end token fed forwards returns the same events again, in order.
	r := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=3", nil)
	got := bodies(r, "chunk")
	fwd := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=f&limit=3&from="+r.Get("end").String(), nil)
	back := bodies(fwd, "chunk")
	if len(got) != 3 || len(back) != 3 || got[0] != back[2] || got[2] != back[0] {
		t.Fatalf("round trip: %v then %v", got, back)
	}
	// to bounds the page.
	r = u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=100&to="+r.Get("end").String(), nil)
	if len(bodies(r, "chunk")) != 3 {
		t.Fatalf("to: %v", bodies(r, "chunk"))
	}
	u.MustErr(t, 400, "M_UNKNOWN", "GET", hstest.Room(room)+"/messages?dir=b&from=garbage", nil)
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", hstest.Room(room)+"/messages?dir=x", nil)
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", hstest.Room(room)+"/messages?dir=b&limit=abc", nil)
	u.MustErr(t, 400, "M_BAD_JSON", "GET", hstest.Room(room)+"/messages?dir=b&filter="+url.QueryEscape(`{"types":"x"}`), nil)
	// An empty from (matrix-nio sends one) means the end.
	if n := len(bodies(u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&from=&limit=5", nil), "chunk")); n != 5 {
		t.Fatalf("empty from: %d", n)
	}
}

func TestMessagesLazyLoadAndFilter(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	bob := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	bob.Send(t, room, "from bob")
	u.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.image", "body": "pic", "url": "mxc://x/y"})
	f := url.QueryEscape(`{"lazy_load_members":true,"senders":["` + bob.UserID + `"]}`)
	r := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=10&filter="+f, nil)
	for _, e := range r.Get("chunk").Array() {
		if e.Get("sender").String() != bob.UserID {
			t.Fatalf("senders filter let through %s", e.Raw)
		}
	}
	st := r.Get("state").Array()
	if len(st) != 1 || st[0].Get("state_key").String() != bob.UserID {
		t.Fatalf("lazy-loaded members: %s", r.Get("state").Raw)
	}
	r = u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=10&filter="+url.QueryEscape(`{"contains_url":true}`), nil)
	if got := bodies(r, "chunk"); len(got) != 1 || got[0] != "pic" {
		t.Fatalf("contains_url: %v", got)
	}
}

func TestContext(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	var ids []string
	for i := 0; i < 9; i++ {
		ids = append(ids, u.Send(t, room, fmt.Sprintf("c%d", i)))
	}
	r := u.Must(t, 200, "GET", hstest.Room(room)+"/context/"+url.PathEscape(ids[4])+"?limit=4", nil)
	if r.Get("event.content.body").String() != "c4" {
		t.Fatalf("context event: %s", r)
	}
	if got := bodies(r, "events_before"); len(got) != 2 || got[0] != "c3" || got[1] != "c2" {
		t.Fatalf("events_before: %v", got)
	}
	if got := bodies(r, "events_after"); len(got) != 2 || got[0] != "c5" || got[1] != "c6" {
		t.Fatalf("events_after: %v", got)
	}
	if len(r.Get("state").Array()) < 4 || r.Get("start").String() == "" || r.Get("end").String() == "" {
		t.Fatalf("context state/tokens: %s", r)
	}
	// The tokens continue the timeline.
	more := u.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=f&limit=1&from="+r.Get("end").String(), nil)
	if got := bodies(more, "chunk"); len(got) != 1 || got[0] != "c7" {
		t.Fatalf("after context end: %v", got)
	}
	u.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/context/"+url.PathEscape("$missing"), nil)
}
