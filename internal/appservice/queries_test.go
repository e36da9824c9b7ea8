package appservice_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// TestUserQueries: inviting, starting a DM with or looking up the profile of an unknown
// user of a service's exclusive namespace asks the service, which registers it; then the
// request goes on. Unknown users elsewhere are not asked about.
func TestUserQueries(t *testing.T) {
	irc := newFakeService(t, "irc")
	var s *hstest.Server
	var asked atomic.Int32
	irc.onUser = func(userID string) int {
		asked.Add(1)
		if strings.HasPrefix(userID, "@irc_nobody") {
			return 404
		}
		// The service creates the user before it answers, as bridges do.
		local := strings.TrimSuffix(strings.TrimPrefix(userID, "@"), ":localhost")
		c := irc.client(s)
		if r := c.Do(t, "POST", "register", map[string]any{"type": "m.login.application_service", "username": local, "inhibit_login": true}); r.Status != 200 {
			t.Errorf("registering %s: %s", userID, r)
		}
		if r := c.Do(t, "PUT", masq("profile/"+url.PathEscape(userID)+"/displayname", userID), map[string]any{"displayname": "Ghost " + local}); r.Status != 200 {
			t.Errorf("naming %s: %s", userID, r)
		}
		return 200
	}
	s = hstest.New(t, withServices(irc.registration(t, ircNamespaces)))
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, nil)

	alice.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": "@irc_ann:localhost"})
	irc.waitEvent(t, "the invite", func(ev map[string]any) bool { return ev["state_key"] == "@irc_ann:localhost" })
	dm := alice.Must(t, 200, "POST", "createRoom", map[string]any{"invite": []string{"@irc_ben:localhost"}, "is_direct": true}).Get("room_id").String()
	irc.waitEvent(t, "the DM invite", func(ev map[string]any) bool { return ev["state_key"] == "@irc_ben:localhost" && ev["room_id"] == dm })
	if p := s.Anon().Must(t, 200, "GET", "profile/"+url.PathEscape("@irc_cat:localhost"), nil); p.Get("displayname").String() != "Ghost irc_cat" {
		t.Errorf("profile of a queried user: %s", p)
	}
	if n := asked.Load(); n != 3 {
		t.Errorf("%d user queries, want 3", n)
	}
	// Known users, and users of no exclusive namespace, are not asked about.
	alice.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": "@irc_ann:localhost"})
	alice.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": "@bob:localhost"})
	s.Anon().MustErr(t, 404, "M_NOT_FOUND", "GET", "profile/"+url.PathEscape("@bob:localhost"), nil)
	if n := asked.Load(); n != 3 {
		t.Errorf("%d user queries, want still 3", n)
	}
	// The service says no.
	alice.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": "@irc_nobody:localhost"})
}

// TestAliasQueries: joining or resolving an alias of a service's namespace that does not
// exist asks the service, which creates the room; the alias is then resolved again.
func TestAliasQueries(t *testing.T) {
	irc := newFakeService(t, "irc")
	var s *hstest.Server
	irc.onAlias = func(alias string) int {
		if strings.HasPrefix(alias, "#irc_none") {
			return 404
		}
		name := strings.TrimSuffix(strings.TrimPrefix(alias, "#"), ":localhost")
		if r := irc.client(s).Do(t, "POST", "createRoom", map[string]any{"preset": "public_chat", "room_alias_name": name}); r.Status != 200 {
			t.Errorf("creating %s: %s", alias, r)
		}
		return 200
	}
	s = hstest.New(t, withServices(irc.registration(t, ircNamespaces)))
	alice := s.Register(t, "alice")
	roomID := alice.Must(t, 200, "POST", "join/"+url.PathEscape("#irc_go:localhost"), map[string]any{}).Get("room_id").String()
	if got := alice.Must(t, 200, "GET", "directory/room/"+url.PathEscape("#irc_go:localhost"), nil).Get("room_id").String(); got != roomID {
		t.Errorf("the alias resolves to %s, joined %s", got, roomID)
	}
	if got := s.Anon().Must(t, 200, "GET", "directory/room/"+url.PathEscape("#irc_rust:localhost"), nil).Get("room_id").String(); got == "" {
		t.Error("resolving a queried alias")
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "POST", "join/"+url.PathEscape("#irc_none:localhost"), map[string]any{})
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "directory/room/"+url.PathEscape("#other:localhost"), nil)
}

// TestServiceDownIsAClearError: a service that refuses connections or does not answer
// makes queries fail fast with 502 or 504, and a ping with the spec's codes.
func TestServiceDownIsAClearError(t *testing.T) {
	hang := newFakeService(t, "hang")
	release := make(chan struct{})
	defer close(release)
	hang.onAlias = func(string) int { <-release; return 200 }
	hang.onUser = func(string) int { <-release; return 200 }
	hang.other = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	down := newFakeService(t, "down")
	down.srv.Close() // nothing listens at its URL
	s := hstest.New(t, withServices(
		hang.registration(t, "  users:\n    - exclusive: true\n      regex: '@hang_.*'\n  aliases:\n    - exclusive: true\n      regex: '#hang_.*'\n"),
		down.registration(t, "  users:\n    - exclusive: true\n      regex: '@down_.*'\n  aliases:\n    - exclusive: true\n      regex: '#down_.*'\n")),
		func(c *config.Config) { c.AppServiceQueryTimeout = 300 * time.Millisecond })
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, nil)
	start := time.Now()
	alice.MustErr(t, 504, "M_UNKNOWN", "POST", "join/"+url.PathEscape("#hang_x:localhost"), map[string]any{})
	alice.MustErr(t, 504, "M_UNKNOWN", "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": "@hang_x:localhost"})
	alice.MustErr(t, 502, "M_UNKNOWN", "POST", "join/"+url.PathEscape("#down_x:localhost"), map[string]any{})
	alice.MustErr(t, 502, "M_UNKNOWN", "GET", "profile/"+url.PathEscape("@down_x:localhost"), nil)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("four failing queries took %s", d)
	}
	hang.client(s).MustErr(t, 504, "M_CONNECTION_TIMEOUT", "POST", "/_matrix/client/v1/appservice/hang/ping", map[string]any{})
	down.client(s).MustErr(t, 502, "M_CONNECTION_FAILED", "POST", "/_matrix/client/v1/appservice/down/ping", map[string]any{})
}

// TestPing: the service pings itself through the homeserver; the homeserver's call
// carries its hs_token and the transaction ID.
func TestPing(t *testing.T) {
	irc := newFakeService(t, "irc")
	var gotTxn atomic.Value
	irc.other = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/app/v1/ping" || r.Method != "POST" {
			w.WriteHeader(404)
			return
		}
		var body struct {
			TxnID string `json:"transaction_id"`
		}
		raw, _ := io.ReadAll(r.Body)
		json.Unmarshal(raw, &body)
		gotTxn.Store(body.TxnID)
		if body.TxnID == "fail" {
			w.WriteHeader(500)
			io.WriteString(w, `{"errcode":"M_UNKNOWN","error":"broken"}`)
			return
		}
		io.WriteString(w, "{}")
	}
	quiet := newFakeService(t, "quiet")
	quietReg := quiet.registration(t, "  users: []\n")
	s := hstest.New(t, withServices(irc.registration(t, ircNamespaces), quietReg))
	as := irc.client(s)
	r := as.Must(t, 200, "POST", "/_matrix/client/v1/appservice/irc/ping", map[string]any{"transaction_id": "meow"})
	if !r.Get("duration_ms").Exists() || gotTxn.Load() != "meow" {
		t.Errorf("ping: %s, the service got %v", r, gotTxn.Load())
	}
	bad := as.MustErr(t, 502, "M_BAD_STATUS", "POST", "/_matrix/client/v1/appservice/irc/ping", map[string]any{"transaction_id": "fail"})
	if bad.Get("status").Int() != 500 || !strings.Contains(bad.Get("body").String(), "broken") {
		t.Errorf("bad status: %s", bad)
	}
	as.MustErr(t, 403, "M_FORBIDDEN", "POST", "/_matrix/client/v1/appservice/quiet/ping", map[string]any{})
	alice := s.Register(t, "alice")
	alice.MustErr(t, 403, "M_FORBIDDEN", "POST", "/_matrix/client/v1/appservice/irc/ping", map[string]any{})
	// A service whose hs_token the service itself does not know answers 403: M_BAD_STATUS.
	irc.hsToken = "changed"
	if r := as.MustErr(t, 502, "M_BAD_STATUS", "POST", "/_matrix/client/v1/appservice/irc/ping", map[string]any{}); r.Get("status").Int() != 403 {
		t.Errorf("wrong hs_token: %s", r)
	}
}

// TestPingWithoutURL: a service registered with url: null has nothing to ping.
func TestPingWithoutURL(t *testing.T) {
	quiet := newFakeService(t, "quiet")
	reg := quiet.registration(t, "  users: []\n")
	raw, _ := readFile(reg)
	writeFile(t, reg, strings.Replace(raw, "url: "+quiet.srv.URL, "url: null", 1))
	s := hstest.New(t, withServices(reg))
	quiet.client(s).MustErr(t, 400, "M_URL_NOT_SET", "POST", "/_matrix/client/v1/appservice/quiet/ping", map[string]any{})
}

// TestNetworkDirectories: a service keeps its own room list per network, apart from the
// server's; publicRooms shows it for its third_party_instance_id, and with every list
// for include_all_networks. Third-party metadata and lookups go to the services.
func TestNetworkDirectories(t *testing.T) {
	irc := newFakeService(t, "irc")
	irc.other = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_matrix/app/v1/thirdparty/protocol/irc":
			io.WriteString(w, `{"user_fields":["nick"],"location_fields":["channel"],"icon":"mxc://example.org/icon","field_types":{},
				"instances":[{"desc":"Libera","network_id":"libera","fields":{}}]}`)
		case "/_matrix/app/v1/thirdparty/location/irc":
			if r.URL.Query().Get("channel") != "#go" {
				t.Errorf("lookup fields: %s", r.URL.RawQuery)
			}
			io.WriteString(w, `[{"alias":"#irc_libera_#go:localhost","protocol":"irc","fields":{"channel":"#go"}},{"bad":"result"}]`)
		case "/_matrix/app/v1/thirdparty/user/irc":
			io.WriteString(w, `[{"userid":"@irc_nick:localhost","protocol":"irc","fields":{"nick":"nick"}}]`)
		default:
			w.WriteHeader(404)
		}
	}
	reg := irc.registration(t, ircNamespaces, "protocols: [irc]\n")
	s := hstest.New(t, withServices(reg))
	alice := s.Register(t, "alice")
	listed := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "Bridged"})
	main := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public"})
	as := irc.client(s)
	as.Must(t, 200, "PUT", "directory/list/appservice/libera/"+url.PathEscape(listed), map[string]any{"visibility": "public"})
	alice.MustErr(t, 403, "M_FORBIDDEN", "PUT", "directory/list/appservice/libera/"+url.PathEscape(main), map[string]any{"visibility": "public"})
	as.MustErr(t, 400, "M_INVALID_PARAM", "PUT", "directory/list/appservice/libera/"+url.PathEscape(listed), map[string]any{"visibility": "sideways"})

	protocols := alice.Must(t, 200, "GET", "thirdparty/protocols", nil)
	instance := protocols.Get("irc.instances.0.instance_id").String()
	if instance != "irc|libera" {
		t.Fatalf("protocols: %s", protocols)
	}
	if p := alice.Must(t, 200, "GET", "thirdparty/protocol/irc", nil); p.Get("instances.0.desc").String() != "Libera" {
		t.Errorf("protocol: %s", p)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", "thirdparty/protocol/xmpp", nil)
	rooms := func(body map[string]any) []string {
		var out []string
		for _, r := range alice.Must(t, 200, "POST", "publicRooms", body).Get("chunk.#.room_id").Array() {
			out = append(out, r.String())
		}
		return out
	}
	has := func(list []string, id string) bool {
		for _, x := range list {
			if x == id {
				return true
			}
		}
		return false
	}
	if l := rooms(map[string]any{}); has(l, listed) || !has(l, main) {
		t.Errorf("main list: %v", l)
	}
	if l := rooms(map[string]any{"third_party_instance_id": instance}); !has(l, listed) || has(l, main) {
		t.Errorf("the network's list: %v", l)
	}
	if l := rooms(map[string]any{"include_all_networks": true}); !has(l, listed) || !has(l, main) {
		t.Errorf("all lists: %v", l)
	}
	get := alice.Must(t, 200, "GET", "publicRooms?third_party_instance_id="+url.QueryEscape(instance), nil)
	if !strings.Contains(get.String(), listed) {
		t.Errorf("GET with the instance: %s", get)
	}
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", "publicRooms", map[string]any{"include_all_networks": true, "third_party_instance_id": instance})
	as.Must(t, 200, "DELETE", "directory/list/appservice/libera/"+url.PathEscape(listed), nil)
	if l := rooms(map[string]any{"third_party_instance_id": instance}); has(l, listed) {
		t.Errorf("after DELETE: %v", l)
	}

	loc := alice.Must(t, 200, "GET", "thirdparty/location/irc?channel=%23go", nil)
	if n := len(loc.JSON().Array()); n != 1 || loc.Get("0.alias").String() != "#irc_libera_#go:localhost" {
		t.Errorf("location lookup (the invalid result left out): %s", loc)
	}
	if u := alice.Must(t, 200, "GET", "thirdparty/user/irc?nick=nick", nil); u.Get("0.userid").String() != "@irc_nick:localhost" {
		t.Errorf("user lookup: %s", u)
	}
	if u := alice.Must(t, 200, "GET", "thirdparty/user/xmpp", nil); u.JSON().Raw != "[]" {
		t.Errorf("a protocol nobody bridges: %s", u)
	}
}
