package client_test

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// testGateway is a push gateway of the test's own: it records every notification and
// answers with respond (200 {} by default).
type testGateway struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []gjson.Result
	arrived chan struct{}
	respond func(n gjson.Result) (int, string)
}

func newGateway(t *testing.T, tls bool) *testGateway {
	g := &testGateway{arrived: make(chan struct{}, 1000)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != "POST" {
			http.NotFound(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		n := gjson.GetBytes(raw, "notification")
		status, body := 200, "{}"
		g.mu.Lock()
		g.got = append(g.got, n)
		respond := g.respond
		g.mu.Unlock()
		if respond != nil {
			status, body = respond(n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
		g.arrived <- struct{}{}
	})
	if tls {
		g.srv = httptest.NewTLSServer(h)
	} else {
		g.srv = httptest.NewServer(h)
	}
	t.Cleanup(g.srv.Close)
	return g
}

func (g *testGateway) url() string { return g.srv.URL + "/_matrix/push/v1/notify" }

func (g *testGateway) setRespond(f func(n gjson.Result) (int, string)) {
	g.mu.Lock()
	g.respond = f
	g.mu.Unlock()
}

// waitFor returns the first recorded notification (after skip of them) that match accepts,
// waiting up to 15 s.
func (g *testGateway) waitFor(t *testing.T, what string, match func(n gjson.Result) bool) gjson.Result {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		g.mu.Lock()
		for _, n := range g.got {
			if match(n) {
				g.mu.Unlock()
				return n
			}
		}
		g.mu.Unlock()
		select {
		case <-g.arrived:
		case <-deadline:
			t.Fatalf("the gateway never received %s", what)
		}
	}
}

func (g *testGateway) all() []gjson.Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gjson.Result(nil), g.got...)
}

func pusherBody(pushkey, url string, extra map[string]any) map[string]any {
	data := map[string]any{"url": url}
	for k, v := range extra {
		data[k] = v
	}
	return map[string]any{"kind": "http", "app_id": "org.example.app", "app_display_name": "Example", "device_display_name": "Phone",
		"pushkey": pushkey, "lang": "en", "profile_tag": "tag", "data": data}
}

func setPusher(t *testing.T, c *hstest.Client, body map[string]any) {
	t.Helper()
	c.Must(t, 200, "POST", "pushers/set", body)
}

func isEvent(eventID string) func(gjson.Result) bool {
	return func(n gjson.Result) bool { return n.Get("event_id").String() == eventID }
}

func TestPushersAPI(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	if r := alice.Must(t, 200, "GET", "pushers", nil); r.Get("pushers").Raw != "[]" {
		t.Fatalf("no pushers yet: %s", r)
	}
	url := "https://push.example.org/_matrix/push/v1/notify"
	setPusher(t, alice, pusherBody("key-a", url, map[string]any{"format": "event_id_only", "custom": "x"}))
	p := alice.Must(t, 200, "GET", "pushers", nil).Get("pushers.0")
	for field, want := range map[string]string{"pushkey": "key-a", "kind": "http", "app_id": "org.example.app", "app_display_name": "Example",
		"device_display_name": "Phone", "lang": "en", "profile_tag": "tag", "data.url": url, "data.format": "event_id_only", "data.custom": "x"} {
		if got := p.Get(field).String(); got != want {
			t.Errorf("%s = %q, want %q (%s)", field, got, want, p.Raw)
		}
	}
	// Same app ID and pushkey: an update, not a second pusher.
	body := pusherBody("key-a", url, nil)
	body["lang"] = "fr"
	setPusher(t, alice, body)
	if ps := alice.Must(t, 200, "GET", "pushers", nil).Get("pushers").Array(); len(ps) != 1 || ps[0].Get("lang").String() != "fr" {
		t.Fatalf("update: %v", ps)
	}
	// Another user taking the pushkey without append removes alice's; with append both stay.
	body = pusherBody("key-a", url, nil)
	body["append"] = true
	setPusher(t, bob, body)
	if n := len(alice.Must(t, 200, "GET", "pushers", nil).Get("pushers").Array()); n != 1 {
		t.Fatalf("append: alice has %d pushers", n)
	}
	setPusher(t, bob, pusherBody("key-a", url, nil))
	if n := len(alice.Must(t, 200, "GET", "pushers", nil).Get("pushers").Array()); n != 0 {
		t.Fatalf("without append the pushkey moves to bob: alice has %d", n)
	}
	// kind null deletes (a missing one is fine).
	bob.Must(t, 200, "POST", "pushers/set", map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "key-a"})
	bob.Must(t, 200, "POST", "pushers/set", map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "never"})
	if r := bob.Must(t, 200, "GET", "pushers", nil); r.Get("pushers").Raw != "[]" {
		t.Fatalf("after delete: %s", r)
	}
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "pushers", nil)
}

func TestPusherBadInput(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	good := "https://push.example.org/_matrix/push/v1/notify"
	with := func(mod func(b map[string]any)) map[string]any {
		b := pusherBody("k", good, nil)
		mod(b)
		return b
	}
	cases := []struct {
		name    string
		body    any
		status  int
		errcode string
	}{
		{"not http", with(func(b map[string]any) {
			b["data"] = map[string]any{"url": "ftp://push.example.org/_matrix/push/v1/notify"}
		}), 400, "M_INVALID_PARAM"},
		{"not a URL", with(func(b map[string]any) { b["data"] = map[string]any{"url": "push gateway"} }), 400, "M_INVALID_PARAM"},
		{"wrong path", with(func(b map[string]any) { b["data"] = map[string]any{"url": "https://push.example.org/notify"} }), 400, "M_INVALID_PARAM"},
		{"credentials", with(func(b map[string]any) {
			b["data"] = map[string]any{"url": "https://u:p@push.example.org/_matrix/push/v1/notify"}
		}), 400, "M_INVALID_PARAM"},
		{"no url", with(func(b map[string]any) { b["data"] = map[string]any{} }), 400, "M_MISSING_PARAM"},
		{"url not a string", with(func(b map[string]any) { b["data"] = map[string]any{"url": 5} }), 400, "M_BAD_JSON"},
		{"data not an object", with(func(b map[string]any) { b["data"] = "x" }), 400, "M_BAD_JSON"},
		{"missing lang", with(func(b map[string]any) { delete(b, "lang") }), 400, "M_MISSING_PARAM"},
		{"missing data", with(func(b map[string]any) { delete(b, "data") }), 400, "M_MISSING_PARAM"},
		{"missing kind", with(func(b map[string]any) { delete(b, "kind") }), 400, "M_MISSING_PARAM"},
		{"delete without pushkey", map[string]any{"kind": nil, "app_id": "a"}, 400, "M_MISSING_PARAM"},
		{"unknown kind", with(func(b map[string]any) { b["kind"] = "carrier-pigeon" }), 400, "M_INVALID_PARAM"},
		{"email", with(func(b map[string]any) { b["kind"] = "email"; b["app_id"] = "m.email"; b["pushkey"] = "a@example.org" }), 400, "M_THREEPID_NOT_FOUND"},
		{"kind a number", with(func(b map[string]any) { b["kind"] = 1 }), 400, "M_BAD_JSON"},
		{"app_id too long", with(func(b map[string]any) { b["app_id"] = strings.Repeat("a", 65) }), 400, "M_INVALID_PARAM"},
		{"pushkey too long", with(func(b map[string]any) { b["pushkey"] = strings.Repeat("k", 513) }), 400, "M_INVALID_PARAM"},
		{"append not a boolean", with(func(b map[string]any) { b["append"] = "yes" }), 400, "M_BAD_JSON"},
		{"pushkey a number", with(func(b map[string]any) { b["pushkey"] = 7 }), 400, "M_BAD_JSON"},
		{"not an object", []any{1}, 400, "M_BAD_JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			alice.MustErr(t, c.status, c.errcode, "POST", "pushers/set", c.body)
		})
	}
	if r := alice.Must(t, 200, "GET", "pushers", nil); r.Get("pushers").Raw != "[]" {
		t.Fatalf("bad input stored something: %s", r)
	}
	// The limits are inclusive.
	setPusher(t, alice, with(func(b map[string]any) { b["app_id"] = strings.Repeat("a", 64); b["pushkey"] = strings.Repeat("k", 512) }))
}

func TestPushDeliveredToGateway(t *testing.T) {
	s := hstest.New(t)
	gw := newGateway(t, false)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	bob.Must(t, 200, "PUT", "profile/"+bob.UserID+"/displayname", map[string]any{"displayname": "Bobby"})
	setPusher(t, alice, pusherBody("key-full", gw.url(), map[string]any{"custom": "kept"}))
	setPusher(t, alice, pusherBody("key-short", gw.url(), map[string]any{"format": "event_id_only"}))

	// An invite is pushed to the invitee.
	room := bob.CreateRoom(t, map[string]any{"preset": "private_chat", "name": "Pushed room", "invite": []string{alice.UserID}})
	inv := gw.waitFor(t, "the invite", func(n gjson.Result) bool {
		return n.Get("type").String() == "m.room.member" && n.Get("devices.0.pushkey").String() == "key-full"
	})
	if inv.Get("membership").String() != "invite" || !inv.Get("user_is_target").Bool() || inv.Get("room_id").String() != room || inv.Get("sender").String() != bob.UserID {
		t.Fatalf("invite push: %s", inv.Raw)
	}
	alice.Join(t, room)
	msg := bob.Send(t, room, "hello phone")
	full := gw.waitFor(t, "the message (full format)", func(n gjson.Result) bool {
		return n.Get("event_id").String() == msg && n.Get("devices.0.pushkey").String() == "key-full"
	})
	for field, want := range map[string]string{"id": msg, "room_id": room, "type": "m.room.message", "sender": bob.UserID,
		"sender_display_name": "Bobby", "room_name": "Pushed room", "content.body": "hello phone", "prio": "high",
		"counts.unread": "1", "devices.0.app_id": "org.example.app", "devices.0.data.custom": "kept", "devices.0.tweaks.sound": "default"} {
		if got := full.Get(field).String(); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
	if full.Get("devices.0.data.url").Exists() || full.Get("devices.0.pushkey_ts").Int() == 0 {
		t.Errorf("devices: the url is not forwarded, pushkey_ts is: %s", full.Get("devices").Raw)
	}
	short := gw.waitFor(t, "the message (event_id_only)", func(n gjson.Result) bool {
		return n.Get("event_id").String() == msg && n.Get("devices.0.pushkey").String() == "key-short"
	})
	if short.Get("content").Exists() || short.Get("sender").Exists() || short.Get("type").Exists() || short.Get("devices.0.tweaks").Exists() ||
		short.Get("counts.unread").Int() != 1 || short.Get("room_id").String() != room {
		t.Errorf("event_id_only: %s", short.Raw)
	}
	// Alice's own messages are not pushed to her; a receipt sends the new badge.
	receipt(t, alice, room, msg, nil)
	badge := gw.waitFor(t, "the badge reset", func(n gjson.Result) bool {
		return !n.Get("event_id").Exists() && n.Get("counts.unread").Exists() && n.Get("counts.unread").Int() == 0
	})
	if badge.Get("devices.0.app_id").String() != "org.example.app" {
		t.Errorf("badge: %s", badge.Raw)
	}
	mine := alice.Send(t, room, "from alice")
	last := bob.Send(t, room, "after")
	gw.waitFor(t, "the last message", isEvent(last))
	for _, n := range gw.all() {
		if n.Get("event_id").String() == mine {
			t.Fatalf("alice was pushed her own message: %s", n.Raw)
		}
	}
	// A muted room is not pushed.
	pushRule(t, alice, "room", room, map[string]any{"actions": []any{}})
	muted := bob.Send(t, room, "muted")
	pushRule(t, alice, "room", room, map[string]any{"actions": []any{"notify"}})
	unmuted := bob.Send(t, room, "unmuted")
	gw.waitFor(t, "the unmuted message", isEvent(unmuted))
	for _, n := range gw.all() {
		if n.Get("event_id").String() == muted {
			t.Fatalf("a muted room's message was pushed: %s", n.Raw)
		}
	}
}

func TestPushOverTLSWithTrustedCertificate(t *testing.T) {
	gw := newGateway(t, true)
	pemFile := filepath.Join(t.TempDir(), "gateway.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gw.srv.Certificate().Raw})
	if err := os.WriteFile(pemFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	s := hstest.New(t, func(c *config.Config) { c.PushTrust = pemFile })
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := bob.CreateRoom(t, map[string]any{"preset": "public_chat"})
	alice.Join(t, room)
	setPusher(t, alice, pusherBody("tls-key", gw.url(), nil))
	ev := bob.Send(t, room, "over TLS")
	if n := gw.waitFor(t, "a push over TLS", isEvent(ev)); n.Get("content.body").String() != "over TLS" {
		t.Fatalf("push: %s", n.Raw)
	}
}

// TestPushRetriedUntilTheGatewayAccepts: a gateway answering 500 gets the same
// notification again (after the backoff), and once it answered 200 it gets it no more.
func TestPushRetriedUntilTheGatewayAccepts(t *testing.T) {
	s := hstest.New(t)
	gw := newGateway(t, false)
	var mu sync.Mutex
	failures := 1
	gw.setRespond(func(n gjson.Result) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if n.Get("event_id").Exists() && failures > 0 {
			failures--
			return 500, `{"error":"try later"}`
		}
		return 200, "{}"
	})
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := bob.CreateRoom(t, map[string]any{"preset": "public_chat"})
	alice.Join(t, room)
	setPusher(t, alice, pusherBody("retry-key", gw.url(), nil))
	first := bob.Send(t, room, "first")
	second := bob.Send(t, room, "second")
	gw.waitFor(t, "the second message (after the retry of the first)", isEvent(second))
	var seen []string
	for _, n := range gw.all() {
		if id := n.Get("event_id").String(); id != "" {
			seen = append(seen, id)
		}
	}
	// first (500), first again (200), then second: in order, nothing twice after success.
	if len(seen) != 3 || seen[0] != first || seen[1] != first || seen[2] != second {
		t.Fatalf("gateway saw %v, want [first first second]", seen)
	}
}

func TestRejectedPushkeyRemovesPusher(t *testing.T) {
	s := hstest.New(t)
	gw := newGateway(t, false)
	gw.setRespond(func(n gjson.Result) (int, string) {
		if n.Get("devices.0.pushkey").String() == "key-1" {
			return 200, `{"rejected":["key-1"]}`
		}
		return 200, "{}"
	})
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := bob.CreateRoom(t, map[string]any{"preset": "public_chat"})
	alice.Join(t, room)
	setPusher(t, alice, pusherBody("key-1", gw.url(), nil))
	setPusher(t, alice, pusherBody("key-2", gw.url(), nil))
	ev := bob.Send(t, room, "one")
	gw.waitFor(t, "key-1's push", func(n gjson.Result) bool {
		return n.Get("event_id").String() == ev && n.Get("devices.0.pushkey").String() == "key-1"
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps := alice.Must(t, 200, "GET", "pushers", nil).Get("pushers").Array()
		if len(ps) == 1 && ps[0].Get("pushkey").String() == "key-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rejected pusher stays: %v", ps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// key-2 keeps working, key-1 is pushed no more.
	ev2 := bob.Send(t, room, "two")
	gw.waitFor(t, "key-2's push", func(n gjson.Result) bool {
		return n.Get("event_id").String() == ev2 && n.Get("devices.0.pushkey").String() == "key-2"
	})
	for _, n := range gw.all() {
		if n.Get("event_id").String() == ev2 && n.Get("devices.0.pushkey").String() == "key-1" {
			t.Fatal("a removed pusher was pushed")
		}
	}
}

// TestPushRefusedToPrivateAddresses: with push_allow_private off (the default), a gateway
// on loopback is never contacted, even through a name that resolves there.
func TestPushRefusedToPrivateAddresses(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.PushAllowPrivate = "off" })
	gw := newGateway(t, false)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := bob.CreateRoom(t, map[string]any{"preset": "public_chat"})
	alice.Join(t, room)
	_, port, _ := strings.Cut(strings.TrimPrefix(gw.srv.URL, "http://"), ":")
	setPusher(t, alice, pusherBody("by-ip", gw.url(), nil))
	setPusher(t, alice, pusherBody("by-name", "http://localhost:"+port+"/_matrix/push/v1/notify", nil))
	bob.Send(t, room, "never pushed")
	deadline := time.Now().Add(10 * time.Second)
	for refusedCount(t, s) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal counted; the gateway got %d requests", len(gw.all()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(gw.all()); n != 0 {
		t.Fatalf("a loopback gateway was contacted %d times", n)
	}
}

func refusedCount(t *testing.T, s *hstest.Server) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "porthole_push_refused_addresses_total "); ok {
			var f float64
			json.Unmarshal([]byte(v), &f)
			return f
		}
	}
	return 0
}

func login(t *testing.T, s *hstest.Server, user, password string) *hstest.Client {
	t.Helper()
	r := s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": user, "password": password})
	return &hstest.Client{S: s, UserID: r.Get("user_id").String(), Token: r.Get("access_token").String(), DeviceID: r.Get("device_id").String()}
}

// TestPushersGoWithTheirDevice: a password change deletes the pushers of the other devices
// (their sessions end) and keeps the current one's; a logout deletes the device's pushers.
func TestPushersGoWithTheirDevice(t *testing.T) {
	s := hstest.New(t)
	phone := s.Register(t, "paula")
	laptop := login(t, s, "paula", "pw-paula")
	url := "https://push.example.org/_matrix/push/v1/notify"
	setPusher(t, laptop, pusherBody("laptop-key", url, nil))
	setPusher(t, phone, pusherBody("phone-key", url, nil))
	phone.Must(t, 200, "POST", "account/password", map[string]any{"new_password": "new-pw",
		"auth": map[string]any{"type": "m.login.password", "user": "paula", "password": "pw-paula"}})
	ps := phone.Must(t, 200, "GET", "pushers", nil).Get("pushers").Array()
	if len(ps) != 1 || ps[0].Get("pushkey").String() != "phone-key" {
		t.Fatalf("after the password change: %v", ps)
	}
	tablet := login(t, s, "paula", "new-pw")
	setPusher(t, tablet, pusherBody("tablet-key", url, nil))
	tablet.Must(t, 200, "POST", "logout", map[string]any{})
	ps = phone.Must(t, 200, "GET", "pushers", nil).Get("pushers").Array()
	if len(ps) != 1 || ps[0].Get("pushkey").String() != "phone-key" {
		t.Fatalf("after the tablet logged out: %v", ps)
	}
}
