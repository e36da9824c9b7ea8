package client_test

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/hstest"
)

func eventsPath(roomID, from string, extra string) string {
	p := "events?room_id=" + url.QueryEscape(roomID)
	if from != "" {
		p += "&from=" + url.QueryEscape(from)
	}
	if extra != "" {
		p += "&" + extra
	}
	return p
}

// chunkBodies lists the m.room.message bodies of an /events chunk.
func chunkBodies(r hstest.Response) []string { return bodies(r, "chunk") }

// peekers returns a guest and a real non-member, the two kinds of peeker.
func peekers(t *testing.T, s *hstest.Server) map[string]*hstest.Client {
	return map[string]*hstest.Client{"guest": s.Guest(t), "real": s.Register(t, "")}
}

func TestPeekHistoryVisibility(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	for _, hv := range []string{"world_readable", "shared", "invited", "joined"} {
		for kind, p := range peekers(t, s) {
			room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
				{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": hv}}}})
			owner.Send(t, room, "before "+hv)
			t.Run(hv+"/"+kind, func(t *testing.T) {
				if hv != "world_readable" {
					p.MustErr(t, 403, "M_FORBIDDEN", "GET", eventsPath(room, "", ""), nil)
					p.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/initialSync", nil)
					p.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/messages?dir=b", nil)
					return
				}
				is := p.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil)
				if got := chunkBodiesAt(is, "messages.chunk"); len(got) != 1 || got[0] != "before "+hv {
					t.Fatalf("initialSync messages: %s", is)
				}
				if is.Get("membership").Exists() {
					t.Errorf("peekers get no membership: %s", is)
				}
				for _, k := range []string{"room_id", "state", "presence", "receipts", "account_data", "messages.start", "messages.end"} {
					if !is.Get(strings.ReplaceAll(k, ".", ".")).Exists() {
						t.Errorf("initialSync lacks %s", k)
					}
				}
				from := is.Get("messages.end").String()
				done := make(chan hstest.Response, 1)
				go func() { done <- p.Do(t, "GET", eventsPath(room, from, "timeout=20000"), nil) }()
				owner.Send(t, room, "live")
				r := <-done
				if got := chunkBodies(r); len(got) != 1 || got[0] != "live" {
					t.Fatalf("peek: %s", r)
				}
				ev := r.Get("chunk.0")
				if ev.Get("room_id").String() != room || ev.Get("user_id").String() != owner.UserID ||
					ev.Get("unsigned.membership").String() != "leave" || !ev.Get("unsigned.age").Exists() {
					t.Errorf("peeked event format: %s", ev.Raw)
				}
				if r.Get("start").String() != from || r.Get("end").String() == from {
					t.Errorf("tokens: %s", r)
				}
			})
		}
	}
}

func chunkBodiesAt(r hstest.Response, path string) []string { return bodies(r, path) }

// The sytest expectation: a message sent before the room became world-readable is hidden,
// the switch itself and later messages are seen.
func TestPeekInitialSyncBoundary(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	owner.Send(t, room, "private")
	owner.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "world_readable"})
	owner.Send(t, room, "public")
	for kind, p := range peekers(t, s) {
		is := p.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil)
		chunk := is.Get("messages.chunk").Array()
		if len(chunk) != 2 || chunk[0].Get("type").String() != "m.room.history_visibility" ||
			chunk[0].Get("content.history_visibility").String() != "world_readable" || chunk[1].Get("content.body").String() != "public" {
			t.Fatalf("%s: chunk must be [history_visibility, public]: %s", kind, is.Get("messages.chunk").Raw)
		}
		// messages.start pages backwards through what the peeker may see.
		back := p.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&from="+is.Get("messages.start").String(), nil)
		for _, e := range back.Get("chunk").Array() {
			if e.Get("content.body").String() == "private" {
				t.Fatalf("%s: back-pagination leaked a pre-world_readable message", kind)
			}
		}
	}
}

func TestPeekSwitchAwayFromWorldReadable(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	poll := func(act func()) hstest.Response {
		done := make(chan hstest.Response, 1)
		go func() { done <- g.Do(t, "GET", eventsPath(room, from, "timeout=20000&limit=100"), nil) }()
		s.WaitParked(t, 1)
		act()
		r := <-done
		if r.Status != 200 {
			t.Fatalf("poll: %s", r)
		}
		from = r.Get("end").String()
		return r
	}
	r := poll(func() { owner.Send(t, room, "visible") })
	if got := chunkBodies(r); len(got) != 1 || got[0] != "visible" {
		t.Fatalf("before the switch: %s", r)
	}
	// The switching event is seen by a peeker polling when it happens (the less
	// restrictive of its old and new value counts); the next call is refused.
	r = poll(func() {
		owner.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
		owner.Send(t, room, "hidden")
	})
	for _, e := range r.Get("chunk").Array() {
		if e.Get("content.body").String() == "hidden" {
			t.Fatalf("event after the switch leaked: %s", r)
		}
	}
	if r.Get("chunk.0.type").String() != "m.room.history_visibility" {
		t.Fatalf("want the history_visibility event: %s", r)
	}
	g.MustErr(t, 403, "M_FORBIDDEN", "GET", eventsPath(room, from, "timeout=30000"), nil)
	g.MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/initialSync", nil)
}

func TestPeekLimitPaging(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	for i := 0; i < 20; i++ {
		owner.Send(t, room, fmt.Sprintf("n%02d", i))
	}
	// Typing lands after the messages: it must arrive once, after all of them.
	owner.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(owner.UserID), map[string]any{"typing": true, "timeout": 30000})
	var got []string
	typings := 0
	for i := 0; i < 10; i++ {
		r := g.Must(t, 200, "GET", eventsPath(room, from, "timeout=0&limit=3"), nil)
		if len(r.Get("chunk").Array()) == 0 {
			if r.Get("end").String() != from || r.Get("start").String() != from {
				t.Fatalf("empty chunk must have end == start == from: %s", r)
			}
			break
		}
		for _, e := range r.Get("chunk").Array() {
			switch e.Get("type").String() {
			case "m.typing":
				typings++
				if len(got) != 20 {
					t.Fatalf("typing delivered before the messages it follows (%d messages so far)", len(got))
				}
			case "m.room.message":
				got = append(got, e.Get("content.body").String())
			}
		}
		if n := len(chunkBodies(r)); n > 3 {
			t.Fatalf("limit 3 returned %d events", n)
		}
		from = r.Get("end").String()
	}
	if len(got) != 20 || typings != 1 {
		t.Fatalf("paging got %d messages and %d typing: %v", len(got), typings, got)
	}
	for i, b := range got {
		if b != fmt.Sprintf("n%02d", i) {
			t.Fatalf("order: %v", got)
		}
	}
}

func TestPeekErrors(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", "events", nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", "events?room_id=", nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, "bogus", ""), nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, "s-1", ""), nil)
	g.MustErr(t, 400, "M_INVALID_PARAM", "GET", eventsPath(room, "", "limit=ten"), nil)
	g.MustErr(t, 400, "M_INVALID_PARAM", "GET", eventsPath(room, "", "limit=-1"), nil)
	g.MustErr(t, 400, "M_UNKNOWN", "GET", eventsPath(room, "", "timeout=1.5"), nil)
	g.MustErr(t, 403, "M_FORBIDDEN", "GET", eventsPath("!unknown:localhost", "", ""), nil)
	g.MustErr(t, 403, "M_FORBIDDEN", "GET", eventsPath("garbage", "", ""), nil)
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", eventsPath(room, "", ""), nil)
	// Every prefix serves it; sytest uses r0 with the token in the query.
	for _, prefix := range []string{"/_matrix/client/r0/", "/_matrix/client/api/v1/", "/_matrix/client/v3/"} {
		s.Anon().Must(t, 200, "GET", prefix+eventsPath(room, "", "timeout=0&access_token="+g.Token), nil)
	}
	// Tokens from /sync and room initialSync are accepted; END and empty mean now.
	u := s.Register(t, "")
	nb := u.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	u.Must(t, 200, "GET", eventsPath(room, nb, "timeout=0"), nil)
	u.Must(t, 200, "GET", eventsPath(room, "END", "timeout=0"), nil)
	u.Must(t, 200, "GET", eventsPath(room, "s3456_9_0", "timeout=0"), nil)
	r := u.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil)
	if !r.Get("chunk").IsArray() || r.Get("start").String() == "" || r.Get("end").String() != r.Get("start").String() {
		t.Fatalf("quiet /events: %s", r)
	}
	// A real user may still use the deprecated global stream.
	u.Must(t, 200, "GET", "events?timeout=0", nil)
}

func TestPeekEphemeral(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	for kind, p := range peekers(t, s) {
		from := p.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
		msg := owner.Send(t, room, "mice")
		owner.Must(t, 200, "PUT", "presence/"+url.PathEscape(owner.UserID)+"/status", map[string]any{"presence": "online", "status_msg": kind})
		owner.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read/"+url.PathEscape(msg), map[string]any{})
		owner.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read.private/"+url.PathEscape(msg), map[string]any{})
		owner.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(owner.UserID), map[string]any{"typing": true, "timeout": 30000})
		r := p.Must(t, 200, "GET", eventsPath(room, from, "timeout=0"), nil)
		var order []string
		for _, e := range r.Get("chunk").Array() {
			order = append(order, e.Get("type").String())
			switch e.Get("type").String() {
			case "m.presence":
				if e.Get("content.user_id").String() != owner.UserID || e.Get("room_id").Exists() {
					t.Errorf("%s presence: %s", kind, e.Raw)
				}
			case "m.typing":
				if e.Get("room_id").String() != room || e.Get("content.user_ids.0").String() != owner.UserID {
					t.Errorf("%s typing: %s", kind, e.Raw)
				}
			case "m.receipt":
				if e.Get("room_id").String() != room || !e.Get("content."+escapeKey(msg)+".m\\.read").Exists() {
					t.Errorf("%s receipt: %s", kind, e.Raw)
				}
			}
		}
		if strings.Join(order, ",") != "m.room.message,m.presence,m.typing,m.receipt" {
			t.Fatalf("%s chunk order %v: %s", kind, order, r)
		}
		owner.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(owner.UserID), map[string]any{"typing": false})
		// No tight loop: repeating from end soon gives an empty chunk.
		from = r.Get("end").String()
		for i := 0; i < 6; i++ {
			r = p.Must(t, 200, "GET", eventsPath(room, from, "timeout=0"), nil)
			from = r.Get("end").String()
			if len(r.Get("chunk").Array()) == 0 {
				break
			}
		}
		if len(r.Get("chunk").Array()) != 0 {
			t.Fatalf("%s: /events keeps returning items: %s", kind, r)
		}
	}
}

// SYN-606: one user peeking two rooms gets two independent streams.
func TestPeekTwoRoomsSeparately(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room1, room2 := owner.WorldReadableRoom(t), owner.WorldReadableRoom(t)
	for kind, p := range peekers(t, s) {
		from1 := p.Must(t, 200, "GET", hstest.Room(room1)+"/initialSync", nil).Get("messages.end").String()
		from2 := p.Must(t, 200, "GET", hstest.Room(room2)+"/initialSync", nil).Get("messages.end").String()
		var wg sync.WaitGroup
		results := make([]hstest.Response, 2)
		wg.Add(2)
		go func() { defer wg.Done(); results[0] = p.Do(t, "GET", eventsPath(room1, from1, "timeout=20000"), nil) }()
		go func() { defer wg.Done(); results[1] = p.Do(t, "GET", eventsPath(room2, from2, "timeout=20000"), nil) }()
		s.WaitParked(t, 2)
		owner.Send(t, room1, "moose")
		owner.Send(t, room2, "mice")
		wg.Wait()
		for i, want := range []string{"moose", "mice"} {
			for _, e := range results[i].Get("chunk").Array() {
				if e.Get("type").String() == "m.room.message" && e.Get("content.body").String() != want {
					t.Fatalf("%s room%d stream carried %s", kind, i+1, e.Raw)
				}
			}
		}
		// Repeating a call with the same from returns the same events.
		again := p.Must(t, 200, "GET", eventsPath(room1, from1, "timeout=0"), nil)
		if got := chunkBodies(again); len(got) != 1 || got[0] != "moose" {
			t.Fatalf("%s repeat: %v", kind, got)
		}
	}
}

// A write that lands between the long-poll's subscription and its read is never missed.
// A message committed after a long-poll registers but before it reads must wake it: the
// read hook commits exactly then. (With the read before the registration, the wake would
// be lost and the request would wait out its timeout.)
func TestPeekRaceSubscribeRead(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	for i := 0; i < 10; i++ {
		want := fmt.Sprintf("race %d", i)
		var once sync.Once
		s.Server.Syncer().SetReadHook(func() { once.Do(func() { owner.Send(t, room, want) }) })
		r := g.Do(t, "GET", eventsPath(room, from, "timeout=3000&limit=1"), nil)
		s.Server.Syncer().SetReadHook(nil)
		if got := chunkBodies(r); len(got) != 1 || got[0] != want {
			t.Fatalf("round %d: a commit between registering and reading was missed: %s", i, r)
		}
		from = r.Get("end").String()
	}
	// The same for /sync.
	u := s.Register(t, "")
	u.Join(t, room)
	since := u.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	var once sync.Once
	s.Server.Syncer().SetReadHook(func() { once.Do(func() { owner.Send(t, room, "sync race") }) })
	r := u.Do(t, "GET", "sync?timeout=3000&since="+since, nil)
	s.Server.Syncer().SetReadHook(nil)
	if got := bodies(r, "rooms.join."+escapeKey(room)+".timeline.events"); len(got) != 1 || got[0] != "sync race" {
		t.Fatalf("/sync missed a commit between registering and reading: %s", r)
	}
}

func TestPeekDisconnectFreesWaiter(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	// Warm up connections and goroutines, then count.
	g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil)
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.DoCtx(ctx, t, "GET", eventsPath(room, "", "timeout=60000"), nil); close(done) }()
		s.WaitParked(t, 1)
		cancel()
		<-done
		s.WaitUnparked(t)
	}
	// Goroutines of closed connections end; allow a little slack for the HTTP client's.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+4 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+4 {
		t.Fatalf("goroutines grew from %d to %d after 20 abandoned long-polls", base, n)
	}
}

func TestRevokedTokenEndsLongPoll(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	u := s.Register(t, "")
	done := make(chan hstest.Response, 1)
	go func() { done <- u.Do(t, "GET", eventsPath(room, "", "timeout=60000"), nil) }()
	s.WaitParked(t, 1)
	other := &hstest.Client{S: s, Token: s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": u.UserID, "password": "pw-" + localpart(u.UserID)}).Get("access_token").String()}
	other.Must(t, 200, "POST", "logout/all", map[string]any{})
	if r := <-done; r.Status != 401 || r.Get("errcode").String() != "M_UNKNOWN_TOKEN" {
		t.Fatalf("long-poll after logout: %s", r)
	}
}

// bobWasHere makes a public room where bob joined and the owner sent "while bob was here",
// the start of the departed- and banned-user tests.
func bobWasHere(t *testing.T, s *hstest.Server) (owner, bob *hstest.Client, room string) {
	owner, bob = s.Register(t, ""), s.Register(t, "")
	room = owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	owner.Send(t, room, "while bob was here")
	return owner, bob, room
}

func TestRoomInitialSyncMemberAndDeparted(t *testing.T) {
	s := hstest.New(t)
	owner, bob, room := bobWasHere(t, s)
	is := bob.Must(t, 200, "GET", hstest.Room(room)+"/initialSync?limit=5", nil)
	if is.Get("membership").String() != "join" || len(chunkBodiesAt(is, "messages.chunk")) != 1 {
		t.Fatalf("member initialSync: %s", is)
	}
	var sawOwner bool
	for _, e := range is.Get("state").Array() {
		if e.Get("type").String() == "m.room.member" && e.Get("user_id").String() == owner.UserID {
			sawOwner = true
		}
	}
	if !sawOwner {
		t.Fatalf("state member events need user_id: %s", is.Get("state").Raw)
	}
	bob.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	owner.Send(t, room, "after bob left")
	owner.SetState(t, room, "m.room.topic", "", map[string]string{"topic": "later"})
	parted := bob.Must(t, 200, "GET", hstest.Room(room)+"/initialSync", nil)
	if parted.Get("membership").String() != "leave" || len(parted.Get("presence").Array()) != 0 || len(parted.Get("receipts").Array()) != 0 {
		t.Fatalf("departed initialSync: %s", parted)
	}
	for _, b := range chunkBodiesAt(parted, "messages.chunk") {
		if b == "after bob left" {
			t.Fatal("departed user sees events after their leave")
		}
	}
	for _, e := range parted.Get("state").Array() {
		if e.Get("type").String() == "m.room.topic" {
			t.Fatal("departed user sees state set after their leave")
		}
	}
	bob.MustErr(t, 400, "M_INVALID_PARAM", "GET", hstest.Room(room)+"/initialSync?limit=x", nil)
	s.Register(t, "").MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room(room)+"/initialSync", nil)
	s.Guest(t).MustErr(t, 403, "M_FORBIDDEN", "GET", hstest.Room("!nope:localhost")+"/initialSync", nil)
}

func TestGlobalInitialSync(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"name": "G"})
	u.Send(t, room, "hi")
	r := u.Must(t, 200, "GET", "initialSync?limit=3", nil)
	if r.Get("end").String() == "" || len(r.Get("rooms").Array()) != 1 || r.Get("rooms.0.membership").String() != "join" ||
		len(r.Get("rooms.0.messages.chunk").Array()) != 3 || !r.Get("rooms.0.state").IsArray() {
		t.Fatalf("initialSync: %s", r)
	}
	// end feeds /events.
	u.Must(t, 200, "GET", "events?timeout=0&from="+r.Get("end").String(), nil)
	u.MustErr(t, 400, "M_INVALID_PARAM", "GET", "initialSync?limit=abc", nil)
	s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "initialSync", nil)
	s.Anon().Must(t, 200, "GET", "/_matrix/client/api/v1/initialSync?access_token="+u.Token, nil)
}

func TestGlobalEventsStream(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	other := s.Register(t, "")
	room := u.CreateRoom(t, map[string]any{"preset": "public_chat"})
	other.Join(t, room)
	from := u.Must(t, 200, "GET", "events?timeout=0", nil).Get("end").String()
	for i := 0; i < 20; i++ {
		other.Send(t, room, fmt.Sprintf("g%02d", i))
	}
	var got []string
	for i := 0; i < 10 && len(got) < 20; i++ {
		r := u.Must(t, 200, "GET", "events?timeout=500&limit=5&from="+from, nil)
		got = append(got, chunkBodies(r)...)
		from = r.Get("end").String()
	}
	if len(got) != 20 || got[0] != "g00" || got[19] != "g19" {
		t.Fatalf("global stream paging: %v", got)
	}
}

var _ = gjson.Result{}
