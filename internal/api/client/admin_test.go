package client_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

func TestThirdPartyAndThreepids(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	g := s.Guest(t)
	for _, c := range []*hstest.Client{u, g} {
		if r := c.Must(t, 200, "GET", "thirdparty/protocols", nil); r.JSON().Raw != "{}" {
			t.Fatalf("protocols: %s", r)
		}
		c.MustErr(t, 404, "M_NOT_FOUND", "GET", "thirdparty/protocol/irc", nil)
		for _, p := range []string{"thirdparty/location", "thirdparty/location/irc?searchFields=x", "thirdparty/user", "thirdparty/user/irc", "thirdparty/location?alias=%23a:localhost", "thirdparty/user?userid=@a:localhost"} {
			if r := c.Must(t, 200, "GET", p, nil); r.JSON().Raw != "[]" {
				t.Fatalf("%s: %s", p, r)
			}
		}
	}
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", "thirdparty/protocols", nil)

	if r := u.Must(t, 200, "GET", "account/3pid", nil); len(r.Get("threepids").Array()) != 0 || !r.Get("threepids").IsArray() {
		t.Fatalf("3pids: %s", r)
	}
	// Changes are disabled, as the capability says.
	if u.Must(t, 200, "GET", "capabilities", nil).Get(`capabilities.m\.3pid_changes.enabled`).Bool() {
		t.Fatal("capability says 3pid changes are enabled")
	}
	u.MustErr(t, 400, "M_FORBIDDEN", "POST", "account/3pid/add", map[string]any{"client_secret": "s", "sid": "1"})
	u.MustErr(t, 400, "M_FORBIDDEN", "POST", "account/3pid", map[string]any{"three_pid_creds": map[string]any{"client_secret": "s", "sid": "1"}})
	u.MustErr(t, 400, "M_FORBIDDEN", "POST", "account/3pid/delete", map[string]any{"medium": "email", "address": "a@example.org"})
	s.Anon().MustErr(t, 400, "M_FORBIDDEN", "POST", "account/3pid/email/requestToken", map[string]any{"client_secret": "s", "email": "a@example.org", "send_attempt": 1})
	s.Anon().MustErr(t, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "POST", "account/3pid/msisdn/requestToken",
		map[string]any{"client_secret": "s", "country": "GB", "phone_number": "07700900001", "send_attempt": 1})
	u.MustErr(t, 400, "M_NOT_JSON", "POST", "account/3pid/add", "nope")
	// No identity server is trusted: binding is refused, unbinding has nothing to do.
	bind := map[string]any{"client_secret": "s", "id_server": "id.example.org", "id_access_token": "t", "sid": "1"}
	u.MustErr(t, 400, "M_SERVER_NOT_TRUSTED", "POST", "account/3pid/bind", bind)
	delete(bind, "sid")
	u.MustErr(t, 400, "M_MISSING_PARAM", "POST", "account/3pid/bind", bind)
	r := u.Must(t, 200, "POST", "account/3pid/unbind", map[string]any{"medium": "email", "address": "a@example.org"})
	if r.Get("id_server_unbind_result").String() != "no-support" {
		t.Fatalf("unbind: %s", r)
	}
	u.MustErr(t, 400, "M_INVALID_PARAM", "POST", "account/3pid/unbind", map[string]any{"medium": "pigeon", "address": "a"})
	u.MustErr(t, 400, "M_MISSING_PARAM", "POST", "account/3pid/unbind", map[string]any{"medium": "email"})
	g.MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "account/3pid", nil)
}

func TestTurnServer(t *testing.T) {
	s := hstest.New(t)
	if r := s.Register(t, "").Must(t, 200, "GET", "voip/turnServer", nil); r.JSON().Raw != "{}" {
		t.Fatalf("no TURN configured: %s", r)
	}
	secret := hstest.New(t, func(c *config.Config) {
		c.TurnURIs = []string{"turn:turn.example.org?transport=udp", "turns:turn.example.org"}
		c.TurnSharedSecret = "s3cret"
		c.TurnUserLifetime = 2 * time.Hour
		c.TurnAllowGuests = false
	})
	u := secret.Register(t, "")
	before := time.Now()
	r := u.Must(t, 200, "GET", "voip/turnServer", nil)
	user := r.Get("username").String()
	expiry, who, ok := strings.Cut(user, ":")
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if !ok || err != nil || who != u.UserID || exp < before.Add(2*time.Hour).Unix() || exp > time.Now().Add(2*time.Hour).Unix()+1 {
		t.Fatalf("username %q", user)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(user))
	if r.Get("password").String() != base64.StdEncoding.EncodeToString(mac.Sum(nil)) || r.Get("ttl").Int() != 7200 || len(r.Get("uris").Array()) != 2 {
		t.Fatalf("credentials: %s", r)
	}
	secret.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "voip/turnServer", nil)
	// The old prefix still works (as Synapse).
	u.Must(t, 200, "GET", "/_matrix/client/api/v1/voip/turnServer", nil)

	fixed := hstest.New(t, func(c *config.Config) {
		c.TurnURIs = []string{"turn:turn.example.org"}
		c.TurnUsername, c.TurnPassword = "static", "pw"
	})
	r = fixed.Guest(t).Must(t, 200, "GET", "voip/turnServer", nil)
	if r.Get("username").String() != "static" || r.Get("password").String() != "pw" || r.Get("ttl").Int() != 3600 {
		t.Fatalf("fixed credentials: %s", r)
	}
}

func TestWhois(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "whois-alice")
	bob := s.Register(t, "")
	admin := s.Register(t, "")
	s.MakeAdmin(t, admin.UserID)
	path := func(u string) string { return "admin/whois/" + url.PathEscape(u) }

	// One's own connections show at once (before they are flushed to the database).
	r := alice.Must(t, 200, "GET", path(alice.UserID), nil)
	conn := r.Get("devices." + alice.DeviceID + ".sessions.0.connections.0")
	if r.Get("user_id").String() != alice.UserID || conn.Get("ip").String() != "127.0.0.1" || conn.Get("last_seen").Int() == 0 ||
		!strings.HasPrefix(conn.Get("user_agent").String(), "Go-http-client") {
		t.Fatalf("whois self: %s", r)
	}
	bob.MustErr(t, 403, "M_FORBIDDEN", "GET", path(alice.UserID), nil)
	r = admin.Must(t, 200, "GET", path(alice.UserID), nil)
	if !r.Get("devices." + alice.DeviceID + ".sessions.0.connections.0.ip").Exists() {
		t.Fatalf("whois by an admin: %s", r)
	}
	admin.MustErr(t, 404, "M_NOT_FOUND", "GET", path("@nobody:localhost"), nil)
	admin.MustErr(t, 400, "M_UNKNOWN", "GET", path("@someone:elsewhere.example"), nil)
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", path(alice.UserID), nil)

	// Flushed connections are stored, and the devices' last seen address with them.
	if err := s.Server.Accounts().FlushSeen(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	ips, err := s.Server.Store().ClientIPs(context.Background(), alice.UserID)
	if err != nil || len(ips) != 1 || ips[0].DeviceID != alice.DeviceID {
		t.Fatalf("stored connections: %v %v", ips, err)
	}
	if d := alice.Must(t, 200, "GET", "devices/"+alice.DeviceID, nil); d.Get("last_seen_ip").String() != "127.0.0.1" {
		t.Fatalf("device: %s", d)
	}
	// A deleted device's connections go with it.
	second := s.Login(t, alice.UserID, "pw-whois-alice")
	second.Must(t, 200, "GET", path(alice.UserID), nil)
	alice.Must(t, 200, "POST", "logout", nil)
	r = second.Must(t, 200, "GET", path(alice.UserID), nil)
	if r.Get("devices."+alice.DeviceID).Exists() || !r.Get("devices."+second.DeviceID).Exists() {
		t.Fatalf("after logout: %s", r)
	}
}

func TestOpenIDToken(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	other := s.Register(t, "")
	path := "user/" + url.PathEscape(u.UserID) + "/openid/request_token"
	r := u.Must(t, 200, "POST", path, map[string]any{})
	if r.Get("token_type").String() != "Bearer" || r.Get("matrix_server_name").String() != "localhost" || r.Get("expires_in").Int() != 3600 {
		t.Fatalf("token: %s", r)
	}
	tok := r.Get("access_token").String()
	accounts := s.Server.Accounts()
	if who, err := accounts.OpenIDUser(context.Background(), tok, time.Now()); err != nil || who != u.UserID {
		t.Fatalf("validating: %q %v", who, err)
	}
	if _, err := accounts.OpenIDUser(context.Background(), tok, time.Now().Add(61*time.Minute)); err == nil {
		t.Fatal("an expired token is valid")
	}
	if _, err := accounts.OpenIDUser(context.Background(), "bogus", time.Now()); err == nil {
		t.Fatal("an unknown token is valid")
	}
	// It is no access token.
	(&hstest.Client{S: s, Token: tok}).MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
	other.MustErr(t, 403, "M_FORBIDDEN", "POST", path, map[string]any{})
	u.MustErr(t, 400, "M_NOT_JSON", "POST", path, "x")
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "POST", path, map[string]any{})
}

func TestReports(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	eve := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "private_chat"})
	alice.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": bob.UserID})
	bob.Join(t, room)
	ev := alice.Send(t, room, "rude")
	bob.Must(t, 200, "POST", hstest.Room(room)+"/report/"+url.PathEscape(ev), map[string]any{"reason": "rude", "score": -100})
	bob.Must(t, 200, "POST", hstest.Room(room)+"/report/"+url.PathEscape(ev), map[string]any{})
	// Events the reporter cannot see are not found, as unknown ones.
	eve.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room(room)+"/report/"+url.PathEscape(ev), map[string]any{"reason": "x"})
	bob.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room(room)+"/report/"+url.PathEscape("$nope"), map[string]any{"reason": "x"})
	bob.MustErr(t, 400, "M_BAD_JSON", "POST", hstest.Room(room)+"/report/"+url.PathEscape(ev), map[string]any{"reason": 5})
	bob.MustErr(t, 400, "M_BAD_JSON", "POST", hstest.Room(room)+"/report/"+url.PathEscape(ev), map[string]any{"score": "high"})
	// Events before bob joined a room with joined history are hidden from him too.
	closed := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "joined"}}}})
	early := alice.Send(t, closed, "before")
	bob.Join(t, closed)
	bob.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room(closed)+"/report/"+url.PathEscape(early), map[string]any{"reason": "x"})

	// Rooms: any known room, joined or not.
	eve.Must(t, 200, "POST", hstest.Room(room)+"/report", map[string]any{"reason": "spam room"})
	eve.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room("!nope:localhost")+"/report", map[string]any{"reason": "x"})
	eve.MustErr(t, 400, "M_MISSING_PARAM", "POST", hstest.Room(room)+"/report", map[string]any{})
	eve.MustErr(t, 400, "M_BAD_JSON", "POST", hstest.Room(room)+"/report", map[string]any{"reason": strings.Repeat("x", 1001)})

	// Users: unknown and remote users are accepted and dropped.
	eve.Must(t, 200, "POST", "users/"+url.PathEscape(alice.UserID)+"/report", map[string]any{"reason": "mean"})
	eve.Must(t, 200, "POST", "users/"+url.PathEscape("@ghost:localhost")+"/report", map[string]any{"reason": "x"})
	eve.Must(t, 200, "POST", "users/"+url.PathEscape("@x:elsewhere.example")+"/report", map[string]any{"reason": "x"})
	eve.MustErr(t, 400, "M_INVALID_PARAM", "POST", "users/notauser/report", map[string]any{"reason": "x"})
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "POST", hstest.Room(room)+"/report", map[string]any{"reason": "x"})

	reps, err := s.Server.Store().Reports(context.Background(), 10)
	if err != nil || len(reps) != 4 {
		t.Fatalf("stored reports: %+v %v", reps, err)
	}
	if r := reps[0]; r.Kind != "user" || r.TargetUser != alice.UserID || r.Reporter != eve.UserID || r.Reason != "mean" {
		t.Fatalf("user report: %+v", r)
	}
	if r := reps[1]; r.Kind != "room" || r.RoomID != room || r.Reason != "spam room" {
		t.Fatalf("room report: %+v", r)
	}
	if r := reps[3]; r.Kind != "event" || r.EventID != ev || r.Reason != "rude" || !strings.Contains(string(r.Content), `"score":-100`) || r.ReceivedTS == 0 {
		t.Fatalf("event report: %+v", r)
	}
}
