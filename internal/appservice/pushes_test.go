package appservice_test

import (
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"porthole/internal/hstest"
)

// ircNamespaces claims @irc_* and #irc_* exclusively on the test server ("localhost").
const ircNamespaces = `  users:
    - exclusive: true
      regex: '@irc_.*:localhost'
  aliases:
    - exclusive: true
      regex: '#irc_.*:localhost'
`

// register registers a user of the service's namespace and returns its masquerading client.
func (f *fakeService) register(t *testing.T, s *hstest.Server, localpart string) *hstest.Client {
	t.Helper()
	r := f.client(s).Must(t, 200, "POST", "register", map[string]any{"type": "m.login.application_service", "username": localpart, "inhibit_login": true})
	return f.as(s, r.Get("user_id").String())
}

// as is the service's client acting as userID (?user_id=).
func (f *fakeService) as(s *hstest.Server, userID string) *hstest.Client {
	c := f.client(s)
	c.UserID = userID
	return c
}

// masq adds ?user_id= to a client path.
func masq(path, userID string) string {
	sep := "?"
	for _, c := range path {
		if c == '?' {
			sep = "&"
		}
	}
	return path + sep + "user_id=" + url.QueryEscape(userID)
}

func send(t *testing.T, c *hstest.Client, roomID, body string) string {
	t.Helper()
	path := hstest.Room(roomID) + "/send/m.room.message/" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if c.Token != "" && c.UserID != "" && c.DeviceID == "" {
		path = masq(path, c.UserID)
	}
	return c.Must(t, 200, "PUT", path, map[string]any{"msgtype": "m.text", "body": body}).Get("event_id").String()
}

// TestTransactionsForEachKindOfInterest: a service gets the events of rooms where one of
// its users is joined, the events its users send, the invites of its users, and the
// events of rooms with one of its aliases or in its room namespaces, and nothing else; in
// order, in transactions whose IDs grow.
func TestTransactionsForEachKindOfInterest(t *testing.T) {
	irc := newFakeService(t, "irc")
	watcher := newFakeService(t, "watcher") // every room, by its room namespace
	s := hstest.New(t, withServices(irc.registration(t, ircNamespaces),
		watcher.registration(t, "  rooms:\n    - exclusive: false\n      regex: '!.*'\n")))
	alice := s.Register(t, "alice")
	r1 := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	m1 := alice.Send(t, r1, "before any bridged user")
	watcher.waitEvent(t, "m1 by the room namespace", byID(m1))

	bob := irc.register(t, s, "irc_bob")
	invite := alice.Must(t, 200, "POST", hstest.Room(r1)+"/invite", map[string]any{"user_id": bob.UserID})
	_ = invite
	irc.waitEvent(t, "the invite of its user", func(ev map[string]any) bool {
		return ev["type"] == "m.room.member" && ev["state_key"] == bob.UserID && ev["content"].(map[string]any)["membership"] == "invite"
	})
	bob.Must(t, 200, "POST", masq("join/"+url.PathEscape(r1), bob.UserID), map[string]any{})
	m2 := alice.Send(t, r1, "with a bridged user joined")
	irc.waitEvent(t, "an event of a room its user is in", byID(m2))
	m3 := send(t, bob, r1, "from the bridged user")
	irc.waitEvent(t, "its user's event", byID(m3))

	r2 := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	irc.client(s).Must(t, 200, "PUT", "directory/room/"+url.PathEscape("#irc_r2:localhost"), map[string]any{"room_id": r2})
	m4 := alice.Send(t, r2, "in a room with the service's alias")
	irc.waitEvent(t, "an event of a room with its alias", byID(m4))

	r3 := alice.CreateRoom(t, nil)
	m5 := alice.Send(t, r3, "nobody of the service here")
	m6 := send(t, bob, r1, "after m5")
	irc.waitEvent(t, "m6", byID(m6))
	watcher.waitEvent(t, "m6", byID(m6))
	got := irc.eventIDs()
	if got[m1] != 0 || got[m5] != 0 {
		t.Errorf("the service got events it has no interest in: m1 %d, m5 %d", got[m1], got[m5])
	}
	if w := watcher.eventIDs(); w[m5] != 1 || w[m4] != 1 {
		t.Errorf("the room-namespace service got m4 %d and m5 %d times, want once", w[m4], w[m5])
	}
	// Events in stream order, transaction IDs growing, each transaction as the spec says.
	var last int64
	var order []string
	for _, tx := range irc.transactions() {
		n, err := strconv.ParseInt(tx.ID, 10, 64)
		if err != nil || n <= last {
			t.Errorf("transaction ID %q after %d: want growing integers", tx.ID, last)
		}
		last = n
		for _, ev := range tx.Events {
			order = append(order, ev["event_id"].(string))
		}
	}
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	if !(pos[m2] < pos[m3] && pos[m3] < pos[m4] && pos[m4] < pos[m6]) {
		t.Errorf("events out of order: %v", order)
	}
}

// TestRetryKeepsTheTransaction: after a 500 the service is sent the same transaction ID
// with the same events, not joined by what was sent meanwhile; then the rest.
func TestRetryKeepsTheTransaction(t *testing.T) {
	irc := newFakeService(t, "irc")
	attempts := 0
	irc.status = func(string) int {
		attempts++
		if attempts == 1 {
			return 500
		}
		return 200
	}
	s := hstest.New(t, withServices(irc.registration(t, ircNamespaces)))
	alice := s.Register(t, "alice")
	bob := irc.register(t, s, "irc_bob")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Must(t, 200, "POST", masq("join/"+url.PathEscape(room), bob.UserID), map[string]any{})
	<-irc.arrived // the join, refused with a 500
	m1 := alice.Send(t, room, "queued behind the failed transaction")
	irc.waitEvent(t, "m1", byID(m1))
	txns := irc.transactions()
	if len(txns) < 3 || txns[0].Status != 500 || txns[1].Status != 200 {
		t.Fatalf("transactions %+v, want a refused one, its retry, then m1's", txns)
	}
	ids := func(tx txn) (out []any) {
		for _, ev := range tx.Events {
			out = append(out, ev["event_id"])
		}
		return out
	}
	if txns[0].ID != txns[1].ID || fmt.Sprint(ids(txns[0])) != fmt.Sprint(ids(txns[1])) {
		t.Errorf("the retry differs: %s %v then %s %v", txns[0].ID, ids(txns[0]), txns[1].ID, ids(txns[1]))
	}
	if txns[1].When.Sub(txns[0].When) < time.Second {
		t.Errorf("retried after %s: want a backoff", txns[1].When.Sub(txns[0].When))
	}
	for _, ev := range txns[1].Events {
		if ev["event_id"] == m1 {
			t.Error("the retry carries an event queued after the failure")
		}
	}
}

// TestMasquerading: the as_token acts as the sender, or as a registered user of the
// service's namespaces with ?user_id= (and one of their devices with ?device_id=);
// nobody else.
func TestMasquerading(t *testing.T) {
	irc := newFakeService(t, "irc")
	s := hstest.New(t, withServices(irc.registration(t, ircNamespaces)))
	alice := s.Register(t, "alice")
	as := irc.client(s)
	if got := as.Must(t, 200, "GET", "account/whoami", nil); got.Get("user_id").String() != "@irc_bot:localhost" || got.Get("device_id").Exists() {
		t.Errorf("whoami as the service: %s", got)
	}
	bob := irc.register(t, s, "irc_bob")
	if got := as.Must(t, 200, "GET", masq("account/whoami", bob.UserID), nil); got.Get("user_id").String() != bob.UserID {
		t.Errorf("whoami as bob: %s", got)
	}
	as.MustErr(t, 403, "M_FORBIDDEN", "GET", masq("account/whoami", "@irc_nobody:localhost"), nil)
	as.MustErr(t, 403, "M_FORBIDDEN", "GET", masq("account/whoami", alice.UserID), nil)
	as.MustErr(t, 403, "M_FORBIDDEN", "GET", masq("account/whoami", "@irc_bob:elsewhere.example"), nil)
	as.MustErr(t, 400, "M_UNKNOWN_DEVICE", "GET", masq("account/whoami", bob.UserID)+"&device_id=NOPE", nil)
	login := as.Must(t, 200, "POST", "login", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": "irc_bob"}})
	dev := login.Get("device_id").String()
	for _, param := range []string{"device_id", "org.matrix.msc3202.device_id"} {
		if got := as.Must(t, 200, "GET", masq("account/whoami", bob.UserID)+"&"+param+"="+dev, nil); got.Get("device_id").String() != dev {
			t.Errorf("whoami with %s: %s", param, got)
		}
	}
	// The login's own token works too.
	own := s.Anon()
	own.Token = login.Get("access_token").String()
	if got := own.Must(t, 200, "GET", "account/whoami", nil); got.Get("user_id").String() != bob.UserID {
		t.Errorf("whoami with the login's token: %s", got)
	}
	wrong := s.Anon()
	wrong.Token = "not-the-as-token"
	wrong.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)

	// Timestamp massaging on send and state, for the service only.
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "power_level_content_override": map[string]any{"users": map[string]int{alice.UserID: 100, bob.UserID: 50}}})
	bob.Must(t, 200, "POST", masq("join/"+url.PathEscape(room), bob.UserID), map[string]any{})
	sent := as.Must(t, 200, "PUT", masq(hstest.Room(room)+"/send/m.room.message/ts1", bob.UserID)+"&ts=1234567890123", map[string]any{"msgtype": "m.text", "body": "from the past"})
	ev := alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(sent.Get("event_id").String()), nil)
	if ev.Get("origin_server_ts").Int() != 1234567890123 {
		t.Errorf("massaged timestamp: %s", ev)
	}
	state := as.Must(t, 200, "PUT", masq(hstest.Room(room)+"/state/org.example.bridge/x", bob.UserID)+"&ts=1234567890000", map[string]any{"a": 1})
	_ = state
	as.MustErr(t, 403, "M_FORBIDDEN", "PUT", masq(hstest.Room(room)+"/state/org.example.bridge/x", alice.UserID)+"&ts=1", map[string]any{"a": 1})
	as.MustErr(t, 400, "M_INVALID_PARAM", "PUT", masq(hstest.Room(room)+"/send/m.room.message/ts2", bob.UserID)+"&ts=yesterday", map[string]any{"msgtype": "m.text", "body": "x"})
	mine := alice.Must(t, 200, "PUT", hstest.Room(room)+"/send/m.room.message/ts3?ts=1", map[string]any{"msgtype": "m.text", "body": "now"})
	if ev := alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(mine.Get("event_id").String()), nil); ev.Get("origin_server_ts").Int() < time.Now().Add(-time.Hour).UnixMilli() {
		t.Errorf("a user's ?ts= was honoured: %s", ev)
	}
}

// TestRegistrationAndExclusivity: a service registers and logs in users of its
// namespaces only; nobody else may register users or make aliases in its exclusive ones.
func TestRegistrationAndExclusivity(t *testing.T) {
	irc := newFakeService(t, "irc")
	s := hstest.New(t, withServices(irc.registration(t, ircNamespaces)))
	as := irc.client(s)
	reg := func(body map[string]any) hstest.Response { return as.Do(t, "POST", "register", body) }
	if r := reg(map[string]any{"type": "m.login.application_service", "username": "irc_carol", "inhibit_login": true}); r.Status != 200 ||
		r.Get("user_id").String() != "@irc_carol:localhost" || r.Get("access_token").Exists() || r.Get("device_id").Exists() {
		t.Errorf("inhibited registration: %s", r)
	}
	if r := reg(map[string]any{"type": "m.login.application_service", "username": "irc_dan"}); r.Status != 200 || r.Get("access_token").String() == "" || r.Get("device_id").String() == "" {
		t.Errorf("registration with login: %s", r)
	}
	as.MustErr(t, 400, "M_USER_IN_USE", "POST", "register", map[string]any{"type": "m.login.application_service", "username": "irc_carol"})
	as.MustErr(t, 400, "M_EXCLUSIVE", "POST", "register", map[string]any{"type": "m.login.application_service", "username": "not_irc"})
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "POST", "register", map[string]any{"type": "m.login.application_service", "username": "irc_eve"})
	alice := s.Register(t, "alice")
	userTok := s.Anon()
	userTok.Token = alice.Token
	userTok.MustErr(t, 401, "M_UNKNOWN_TOKEN", "POST", "register", map[string]any{"type": "m.login.application_service", "username": "irc_eve"})

	s.Anon().MustErr(t, 400, "M_EXCLUSIVE", "POST", "register", map[string]any{"username": "irc_eve", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
	s.Anon().MustErr(t, 400, "M_EXCLUSIVE", "GET", "register/available?username=irc_eve", nil)
	s.Anon().MustErr(t, 400, "M_EXCLUSIVE", "POST", "register", map[string]any{"username": "irc_bot", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
	room := alice.CreateRoom(t, nil)
	alice.MustErr(t, 400, "M_EXCLUSIVE", "PUT", "directory/room/"+url.PathEscape("#irc_mine:localhost"), map[string]any{"room_id": room})
	alice.MustErr(t, 400, "M_EXCLUSIVE", "POST", "createRoom", map[string]any{"room_alias_name": "irc_room"})
	alice.Must(t, 200, "PUT", "directory/room/"+url.PathEscape("#alices:localhost"), map[string]any{"room_id": room})
	as.MustErr(t, 400, "M_EXCLUSIVE", "PUT", "directory/room/"+url.PathEscape("#not_irc:localhost"), map[string]any{"room_id": room})
	as.MustErr(t, 400, "M_EXCLUSIVE", "DELETE", "directory/room/"+url.PathEscape("#alices:localhost"), nil)
	as.Must(t, 200, "PUT", "directory/room/"+url.PathEscape("#irc_room:localhost"), map[string]any{"room_id": room})
	alice.MustErr(t, 400, "M_EXCLUSIVE", "DELETE", "directory/room/"+url.PathEscape("#irc_room:localhost"), nil)
	as.Must(t, 200, "DELETE", "directory/room/"+url.PathEscape("#irc_room:localhost"), nil)

	// Logging in as a user of its namespaces, and nobody else.
	flows := s.Anon().Must(t, 200, "GET", "login", nil)
	if !contains(flows.Get("flows.#.type").Array(), "m.login.application_service") {
		t.Errorf("login flows: %s", flows)
	}
	as.MustErr(t, 403, "M_EXCLUSIVE", "POST", "login", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}})
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "POST", "login", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": "irc_carol"}})
	as.Must(t, 200, "POST", "login", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": "@irc_carol:localhost"}})

	// The service deactivates its users without their password.
	as.Must(t, 200, "POST", masq("account/deactivate", "@irc_carol:localhost"), map[string]any{})
	as.MustErr(t, 403, "M_USER_DEACTIVATED", "GET", masq("account/whoami", "@irc_carol:localhost"), nil)
}

func contains[T interface{ String() string }](list []T, s string) bool {
	for _, v := range list {
		if v.String() == s {
			return true
		}
	}
	return false
}

// TestClusterOneSenderPerService: two nodes on one PostgreSQL database both write events
// the service wants; only one transaction is ever in flight to it, every event arrives
// exactly once and in order, and when a node stops the other carries on.
func TestClusterOneSenderPerService(t *testing.T) {
	irc := newFakeService(t, "irc")
	irc.delay = 20 * time.Millisecond
	nodes := hstest.NewCluster(t, 2, withServices(irc.registration(t, ircNamespaces)))
	a, b := nodes[0], nodes[1]
	alice := a.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bot := irc.client(a)
	bot.Must(t, 200, "POST", "join/"+url.PathEscape(room), map[string]any{})
	aliceB := &hstest.Client{S: b, UserID: alice.UserID, Token: alice.Token}
	var sent []string
	for i := 0; i < 20; i++ {
		c := alice
		if i%2 == 1 {
			c = aliceB
		}
		sent = append(sent, send(t, c, room, fmt.Sprint("message ", i)))
	}
	irc.waitEvent(t, "the last message", byID(sent[len(sent)-1]))
	irc.mu.Lock()
	maxInFlight := irc.maxInFlight // a stopping node's cancelled request may linger in the service
	irc.mu.Unlock()
	a.Stop()
	sent = append(sent, send(t, aliceB, room, "after node a stopped"))
	irc.waitEvent(t, "a message after one node stopped", byID(sent[len(sent)-1]))
	// A transaction cut short by the stop is sent again under its ID (the service drops
	// the repeat); no event may come in two transactions.
	txnsOf := map[string]map[string]bool{}
	var order []string
	for _, tx := range irc.transactions() {
		for _, ev := range tx.Events {
			id := ev["event_id"].(string)
			if txnsOf[id] == nil {
				txnsOf[id] = map[string]bool{}
				if ev["type"] == "m.room.message" {
					order = append(order, id)
				}
			}
			txnsOf[id][tx.ID] = true
		}
	}
	for _, id := range sent {
		if len(txnsOf[id]) != 1 {
			t.Errorf("event %s came in transactions %v", id, txnsOf[id])
		}
	}
	if fmt.Sprint(order) != fmt.Sprint(sent) {
		t.Errorf("messages arrived as %v, sent as %v", order, sent)
	}
	if maxInFlight != 1 {
		t.Errorf("%d transactions were in flight at once", maxInFlight)
	}
}
