package rooms_test

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
	"porthole/internal/rooms"
	"porthole/internal/roomversion"
)

// remoteServer plays another homeserver: it builds and signs events of a room that
// Porthole holds, as they would arrive over federation.
type remoteServer struct {
	t    testing.TB
	s    *hstest.Server
	name string
	key  *federation.SigningKey
}

func newRemote(t testing.TB, s *hstest.Server) *remoteServer {
	return &remoteServer{t: t, s: s, name: "remote.test", key: federation.GenerateSigningKey()}
}

// roomState reads the current state event IDs of a room through a local member.
func roomState(t testing.TB, c *hstest.Client, roomID string) map[[2]string]id.EventID {
	out := map[[2]string]id.EventID{}
	for _, e := range c.Must(t, 200, "GET", hstest.Room(roomID)+"/state", nil).JSON().Array() {
		out[[2]string{e.Get("type").String(), e.Get("state_key").String()}] = id.EventID(e.Get("event_id").String())
	}
	return out
}

// event builds a signed event of the room on top of prev, with auth events from state.
func (rs *remoteServer) event(roomID string, prev []id.EventID, depth int64, state map[[2]string]id.EventID,
	sender, evType string, stateKey *string, content any) (*pdu.PDU, id.EventID) {
	rs.t.Helper()
	raw, err := json.Marshal(content)
	if err != nil {
		rs.t.Fatal(err)
	}
	p := &pdu.PDU{Type: evType, StateKey: stateKey, Sender: id.UserID(sender), Content: jsontext.Value(raw), RoomID: id.RoomID(roomID),
		OriginServerTS: time.Now().UnixMilli(), Depth: depth, PrevEvents: prev, AuthEvents: []id.EventID{}}
	for _, k := range p.AuthEventSelection("10") {
		if eid, ok := state[[2]string{k.Type, k.StateKey}]; ok {
			p.AuthEvents = append(p.AuthEvents, eid)
		}
	}
	if err := p.Sign("10", rs.name, rs.key.ID, rs.key.Priv); err != nil {
		rs.t.Fatal(err)
	}
	eid, err := p.GetEventID("10")
	if err != nil {
		rs.t.Fatal(err)
	}
	return p, eid
}

func (rs *remoteServer) persist(roomID string, p *pdu.PDU, eid id.EventID) rooms.Outcome {
	rs.t.Helper()
	out, err := rs.s.Server.Rooms().PersistRemote(context.Background(), roomID, rooms.RemoteEvent{PDU: p, EventID: eid})
	if err != nil {
		rs.t.Fatalf("persisting %s: %v", eid, err)
	}
	return out
}

func sk(s string) *string { return &s }

// A remote user joins a local room and talks; a local member sees it all through /sync,
// and the next local event builds on the remote one.
func TestRemoteEventsJoinTheRoom(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	since := alice.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	rs := newRemote(t, s)
	bob := "@bob:" + rs.name
	head := lastEvent(t, alice, room)

	state := roomState(t, alice, room)
	join, joinID := rs.event(room, []id.EventID{head.id}, head.depth+1, state, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	if got := rs.persist(room, join, joinID); got != rooms.Accepted {
		t.Fatalf("remote join: %s", got)
	}
	state = roomState(t, alice, room)
	if state[[2]string{"m.room.member", bob}] != joinID {
		t.Fatalf("remote join not in the current state: %v", state)
	}
	msg, msgID := rs.event(room, []id.EventID{joinID}, head.depth+2, state, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "hello from afar"})
	if got := rs.persist(room, msg, msgID); got != rooms.Accepted {
		t.Fatalf("remote message: %s", got)
	}
	if got := rs.persist(room, msg, msgID); got != rooms.Known {
		t.Fatalf("the same event again: %s", got)
	}
	r := alice.Must(t, 200, "GET", "sync?since="+since, nil)
	tl := r.Get("rooms.join." + gjsonKey(room) + ".timeline.events")
	if n := len(tl.Array()); n != 2 || tl.Get("1.content.body").String() != "hello from afar" || tl.Get("0.state_key").String() != bob {
		t.Fatalf("local member's sync: %s", r)
	}
	reply := alice.Send(t, room, "welcome")
	ev := lastEvent(t, alice, room)
	if ev.id != id.EventID(reply) || len(ev.prev) != 1 || ev.prev[0] != msgID {
		t.Fatalf("the local reply should build on the remote message: %+v", ev)
	}
}

// An event that breaks the auth rules is rejected and never shown; one that was allowed
// when its sender wrote it but not now (the sender was banned meanwhile) is soft-failed.
func TestRemoteEventsRejectedAndSoftFailed(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	rs := newRemote(t, s)
	bob := "@bob:" + rs.name
	head := lastEvent(t, alice, room)
	state := roomState(t, alice, room)

	// Not a member: rejected.
	stranger, strangerID := rs.event(room, []id.EventID{head.id}, head.depth+1, state, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "let me in"})
	if got := rs.persist(room, stranger, strangerID); got != rooms.Rejected {
		t.Fatalf("a non-member's message: %s", got)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(strangerID)), nil)

	join, joinID := rs.event(room, []id.EventID{head.id}, head.depth+1, state, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	if got := rs.persist(room, join, joinID); got != rooms.Accepted {
		t.Fatalf("remote join: %s", got)
	}
	joined := roomState(t, alice, room)
	// Alice bans bob; bob's server, not knowing yet, sends a message built before the ban.
	alice.Must(t, 200, "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": bob})
	late, lateID := rs.event(room, []id.EventID{joinID}, head.depth+2, joined, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "sent before I knew"})
	if got := rs.persist(room, late, lateID); got != rooms.SoftFailed {
		t.Fatalf("a message built before the ban: %s", got)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(lateID)), nil)
	for _, e := range alice.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=50", nil).Get("chunk").Array() {
		if e.Get("event_id").String() == string(lateID) || e.Get("event_id").String() == string(strangerID) {
			t.Fatalf("a soft-failed or rejected event reached the timeline: %s", e.Raw)
		}
	}
	if got := roomState(t, alice, room)[[2]string{"m.room.member", bob}]; got == joinID {
		t.Fatal("the ban did not take")
	}
}

type eventInfo struct {
	id    id.EventID
	depth int64
	prev  []id.EventID
}

// lastEvent reads the room's latest event's ID, depth and prev events from storage
// (clients are not shown depth and prev_events).
func lastEvent(t testing.TB, c *hstest.Client, roomID string) eventInfo {
	t.Helper()
	r := c.Must(t, 200, "GET", hstest.Room(roomID)+"/messages?dir=b&limit=1", nil)
	eid := r.Get("chunk.0.event_id").String()
	ev, err := c.S.Server.Store().EventByID(context.Background(), eid)
	if err != nil {
		t.Fatal(err)
	}
	room, err := c.S.Server.Store().Room(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := roomversion.Parse(id.RoomVersion(room.Version), ev.PDU)
	if err != nil {
		t.Fatal(err)
	}
	return eventInfo{id: id.EventID(eid), depth: p.Depth, prev: p.PrevEvents}
}

func gjsonKey(s string) string {
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		if s[i] == '.' || s[i] == '*' || s[i] == '?' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// A remote thread reply counts in the root's aggregations like a local one; a rejected or
// soft-failed one does not.
func TestRemoteRelationsAggregate(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	root := id.EventID(alice.Send(t, room, "root"))
	rs := newRemote(t, s)
	bob := "@bob:" + rs.name
	head := lastEvent(t, alice, room)
	state := roomState(t, alice, room)
	reply := func(prev []id.EventID, depth int64, st map[[2]string]id.EventID, body string) (*pdu.PDU, id.EventID) {
		return rs.event(room, prev, depth, st, bob, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": body,
			"m.relates_to": map[string]string{"rel_type": "m.thread", "event_id": string(root)}})
	}
	count := func() int64 {
		ev := alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(root)), nil)
		return ev.Get(`unsigned.m\.relations.m\.thread.count`).Int()
	}
	stranger, strangerID := reply([]id.EventID{head.id}, head.depth+1, state, "not a member")
	if got := rs.persist(room, stranger, strangerID); got != rooms.Rejected || count() != 0 {
		t.Fatalf("a rejected reply: %s, count %d", got, count())
	}
	join, joinID := rs.event(room, []id.EventID{head.id}, head.depth+1, state, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	if got := rs.persist(room, join, joinID); got != rooms.Accepted {
		t.Fatalf("remote join: %s", got)
	}
	joined := roomState(t, alice, room)
	ok, okID := reply([]id.EventID{joinID}, head.depth+2, joined, "hello")
	if got := rs.persist(room, ok, okID); got != rooms.Accepted || count() != 1 {
		t.Fatalf("an accepted reply: %s, count %d", got, count())
	}
	alice.Must(t, 200, "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": bob})
	late, lateID := reply([]id.EventID{okID}, head.depth+3, joined, "sent before I knew")
	if got := rs.persist(room, late, lateID); got != rooms.SoftFailed || count() != 1 {
		t.Fatalf("a soft-failed reply: %s, count %d", got, count())
	}
}

// An event first stored as an outlier (fetched as an auth event of another) joins the
// timeline when it arrives as part of it.
func TestOutlierJoinsTheTimeline(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	rs := newRemote(t, s)
	bob := "@bob:" + rs.name
	head := lastEvent(t, alice, room)
	join, joinID := rs.event(room, []id.EventID{head.id}, head.depth+1, roomState(t, alice, room), bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	out, err := s.Server.Rooms().PersistRemote(context.Background(), room, rooms.RemoteEvent{PDU: join, EventID: joinID, Outlier: true})
	if err != nil || out != rooms.Outlier {
		t.Fatalf("as an outlier: %s %v", out, err)
	}
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(joinID)), nil)
	if got := roomState(t, alice, room)[[2]string{"m.room.member", bob}]; got != "" {
		t.Fatal("an outlier changed the room's state")
	}
	if got := rs.persist(room, join, joinID); got != rooms.Accepted {
		t.Fatalf("the outlier arriving in the timeline: %s", got)
	}
	alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(joinID)), nil)
	if got := roomState(t, alice, room)[[2]string{"m.room.member", bob}]; got != joinID {
		t.Fatalf("the promoted join is not current: %v", got)
	}
}
