package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
)

// remote builds and signs events of a room of s as the peer's server.
type remote struct {
	t    *testing.T
	s    *hstest.Server
	peer *hstest.Peer
	txn  atomic.Int64
}

func newRemote(t *testing.T, s *hstest.Server) *remote {
	return &remote{t: t, s: s, peer: hstest.NewPeer(t, s.CA)}
}

func (r *remote) user(local string) string { return "@" + local + ":" + r.peer.Name }

// roomState reads the room's current state event IDs through a local member.
func roomState(t *testing.T, c *hstest.Client, roomID string) map[[2]string]id.EventID {
	out := map[[2]string]id.EventID{}
	for _, e := range c.Must(t, 200, "GET", hstest.Room(roomID)+"/state", nil).JSON().Array() {
		out[[2]string{e.Get("type").String(), e.Get("state_key").String()}] = id.EventID(e.Get("event_id").String())
	}
	return out
}

// event builds a signed event on top of the room's head, with auth events from its
// current state as c (a local member) sees it.
func (r *remote) event(c *hstest.Client, roomID, sender, evType string, stateKey *string, content any) (json.RawMessage, id.EventID, *pdu.PDU) {
	r.t.Helper()
	room, err := r.s.Server.Store().Room(context.Background(), roomID)
	if err != nil {
		r.t.Fatal(err)
	}
	return r.eventAfter(c, roomID, sender, evType, stateKey, content, id.EventID(room.HeadEventID), room.Depth+1)
}

// eventAfter is event with the given prev event and depth.
func (r *remote) eventAfter(c *hstest.Client, roomID, sender, evType string, stateKey *string, content any, prev id.EventID, depth int64) (json.RawMessage, id.EventID, *pdu.PDU) {
	r.t.Helper()
	room, err := r.s.Server.Store().Room(context.Background(), roomID)
	if err != nil {
		r.t.Fatal(err)
	}
	raw, _ := json.Marshal(content)
	p := &pdu.PDU{Type: evType, StateKey: stateKey, Sender: id.UserID(sender), Content: raw, RoomID: id.RoomID(roomID),
		OriginServerTS: time.Now().UnixMilli(), Depth: depth, PrevEvents: []id.EventID{prev}, AuthEvents: []id.EventID{}}
	state := roomState(r.t, c, roomID)
	for _, k := range p.AuthEventSelection(id.RoomVersion(room.Version)) {
		if eid, ok := state[[2]string{k.Type, k.StateKey}]; ok {
			p.AuthEvents = append(p.AuthEvents, eid)
		}
	}
	if err := p.Sign(id.RoomVersion(room.Version), r.peer.Name, r.peer.Key.ID, r.peer.Key.Priv); err != nil {
		r.t.Fatal(err)
	}
	eid, err := p.GetEventID(id.RoomVersion(room.Version))
	if err != nil {
		r.t.Fatal(err)
	}
	out, _ := json.Marshal(p)
	return out, eid, p
}

// send sends PDUs in one transaction and returns the answer.
func (r *remote) send(txnID string, pdus ...json.RawMessage) hstest.Response {
	r.t.Helper()
	if txnID == "" {
		txnID = fmt.Sprintf("txn%d", r.txn.Add(1))
	}
	return r.peer.Do(r.t, r.s, "PUT", "/_matrix/federation/v1/send/"+txnID, map[string]any{
		"origin": r.peer.Name, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus})
}

func sk(s string) *string { return &s }

func gjsonPath(s string) string {
	return strings.NewReplacer(".", `\.`, "*", `\*`, "?", `\?`).Replace(s)
}

// A transaction from another server: its user joins a local room and talks; each PDU
// gets its own result, bad ones do not stop the good ones, and a retried transaction gets
// the same answer without being processed again.
func TestSendTransaction(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	since := alice.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	rs := newRemote(t, s)
	bob := rs.user("bob")

	join, joinID, _ := rs.event(alice, room, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	r := rs.send("", join)
	if r.Status != 200 || r.Get("pdus").Get(gjsonPath(string(joinID))).Raw != "{}" {
		t.Fatalf("join over federation: %s", r)
	}

	msg, msgID, _ := rs.event(alice, room, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "hello from afar"})
	// A forged one: signed by another key under the peer's key ID.
	forgedP := &pdu.PDU{}
	json.Unmarshal(msg, forgedP)
	forgedP.Content = json.RawMessage(`{"msgtype":"m.text","body":"forged"}`)
	forgedP.Signatures, forgedP.Hashes = nil, nil
	other := hstest.NewPeer(t, s.CA)
	forgedP.Sign("10", rs.peer.Name, rs.peer.Key.ID, other.Key.Priv)
	forged, _ := json.Marshal(forgedP)
	forgedID, _ := forgedP.GetEventID("10")
	// A tampered one: content changed after signing, so its content hash is wrong (the
	// signature covers the redacted form, which is unchanged): it is kept, redacted.
	// (A type of its own: a redacted m.room.message breaks the client schema, which has no
	// room for an event that arrived redacted without a redaction.)
	_, tamperedID, tp := rs.event(alice, room, bob, "org.porthole.test", nil, map[string]string{"body": "original"})
	tp.Content = json.RawMessage(`{"body":"tampered"}`)
	tampered, _ := json.Marshal(tp)
	// Too large.
	bigRaw, bigID, _ := rs.event(alice, room, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": strings.Repeat("x", 70000)})
	// Of a room nobody here knows.
	unknown := &pdu.PDU{Type: "m.room.message", Sender: id.UserID(bob), RoomID: "!nowhere:" + id.RoomID(rs.peer.Name), Content: json.RawMessage(`{}`),
		OriginServerTS: 1, Depth: 5, PrevEvents: []id.EventID{"$x"}, AuthEvents: []id.EventID{}}
	unknown.Sign("10", rs.peer.Name, rs.peer.Key.ID, rs.peer.Key.Priv)
	unknownRaw, _ := json.Marshal(unknown)
	unknownID, _ := unknown.GetEventID("10")

	r = rs.send("t-mixed", msg, forged, tampered, bigRaw, unknownRaw, json.RawMessage(`{"not":"an event"}`))
	results := r.Get("pdus")
	if r.Status != 200 || results.Get(gjsonPath(string(msgID))).Raw != "{}" {
		t.Fatalf("good message in a mixed transaction: %s", r)
	}
	for name, eid := range map[string]id.EventID{"forged": forgedID, "too large": bigID, "unknown room": unknownID} {
		if results.Get(gjsonPath(string(eid))+".error").String() == "" {
			t.Errorf("%s: no error in %s", name, r)
		}
	}
	// The tampered event is checked against the hash of what was signed: its ID is that
	// of the original, and it is accepted redacted.
	if results.Get(gjsonPath(string(tamperedID))).Raw != "{}" {
		t.Errorf("tampered event: %s", r)
	}
	if n := len(results.Map()); n != 5 {
		t.Errorf("%d results, want 5 (the non-event has no ID): %s", n, r)
	}

	sync := alice.Must(t, 200, "GET", "sync?since="+since, nil)
	tl := sync.Get("rooms.join." + gjsonPath(room) + ".timeline.events")
	var bodies []string
	for _, e := range tl.Array() {
		if e.Get("type").String() != "m.room.member" {
			bodies = append(bodies, e.Get("content.body").String())
		}
	}
	if !slices.Equal(bodies, []string{"hello from afar", ""}) || tl.Get("0.state_key").String() != bob {
		t.Fatalf("local member's timeline: %v in %s", bodies, tl.Raw)
	}

	// The same transaction again: the same answer, nothing new.
	again := rs.send("t-mixed", msg)
	if again.Status != 200 || string(again.Body) != string(r.Body) {
		t.Fatalf("retried transaction: %s, first answer %s", again, r)
	}
	// Not signed, or too many PDUs: refused as a whole.
	if r := s.FedRaw(t, "PUT", "/_matrix/federation/v1/send/x", []byte(`{"pdus":[]}`), nil); r.Status != 401 {
		t.Fatalf("unsigned transaction: %s", r)
	}
	many := make([]json.RawMessage, 51)
	for i := range many {
		many[i] = msg
	}
	if r := rs.send("", many...); r.Status != 400 {
		t.Fatalf("51 PDUs: %s", r)
	}
	if r := rs.peer.Do(t, s, "PUT", "/_matrix/federation/v1/send/y", map[string]any{"origin": "someone.else", "pdus": []any{}}); r.Status != 403 {
		t.Fatalf("transaction naming another origin: %s", r)
	}
}

// Events, state and auth chains are served to servers in the room, redacted where the
// history visibility hides them, and refused to others and to servers the ACL denies.
func TestServeRoomData(t *testing.T) {
	ca := hstest.NewCA(t)
	s := hstest.StartFederating(t, ca, "localhost")
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	alice.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
	early := alice.Send(t, room, "before bob's server joined")
	rs := newRemote(t, s)
	bob := rs.user("bob")
	join, joinID, _ := rs.event(alice, room, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	if r := rs.send("", join); r.Get("pdus").Get(gjsonPath(string(joinID))).Raw != "{}" {
		t.Fatalf("join: %s", r)
	}
	later := alice.Send(t, room, "after")

	get := func(p *hstest.Peer, path string) hstest.Response { return p.Do(t, s, "GET", path, nil) }
	r := get(rs.peer, "/_matrix/federation/v1/event/"+url.PathEscape(later))
	if r.Status != 200 || r.Get("pdus.0.content.body").String() != "after" || r.Get("origin").String() != s.Name {
		t.Fatalf("event after the join: %s", r)
	}
	// Sent while the room was "joined" and none of the peer's users was: redacted.
	r = get(rs.peer, "/_matrix/federation/v1/event/"+url.PathEscape(early))
	if r.Status != 200 || r.Get("pdus.0.content.body").Exists() || r.Get("pdus.0.type").String() != "m.room.message" {
		t.Fatalf("event before the join: %s", r)
	}

	state := roomState(t, alice, room)
	r = get(rs.peer, "/_matrix/federation/v1/state_ids/"+url.PathEscape(room)+"?event_id="+url.QueryEscape(later))
	ids := map[string]bool{}
	for _, v := range r.Get("pdu_ids").Array() {
		ids[v.String()] = true
	}
	if r.Status != 200 || len(ids) != len(state) || !ids[string(joinID)] || !ids[string(state[[2]string{"m.room.create", ""}])] {
		t.Fatalf("state_ids at the last event: %s (state %v)", r, state)
	}
	if chain := r.Get("auth_chain_ids").Array(); len(chain) == 0 || !slices.ContainsFunc(chain, func(v gjson.Result) bool { return v.String() == string(state[[2]string{"m.room.create", ""}]) }) {
		t.Fatalf("auth chain of the state: %s", r)
	}
	// The state before bob's join does not have it.
	r = get(rs.peer, "/_matrix/federation/v1/state_ids/"+url.PathEscape(room)+"?event_id="+url.QueryEscape(string(joinID)))
	if r.Status != 200 || slices.ContainsFunc(r.Get("pdu_ids").Array(), func(v gjson.Result) bool { return v.String() == string(joinID) }) {
		t.Fatalf("state before the join: %s", r)
	}
	r = get(rs.peer, "/_matrix/federation/v1/event_auth/"+url.PathEscape(room)+"/"+url.PathEscape(later))
	types := map[string]bool{}
	for _, e := range r.Get("auth_chain").Array() {
		types[e.Get("type").String()] = true
	}
	if r.Status != 200 || !types["m.room.create"] || !types["m.room.power_levels"] || !types["m.room.member"] {
		t.Fatalf("event_auth: %s", r)
	}
	if r := get(rs.peer, "/_matrix/federation/v1/event/$unknown"); r.Status != 404 {
		t.Fatalf("unknown event: %s", r)
	}
	if r := get(rs.peer, "/_matrix/federation/v1/state_ids/"+url.PathEscape(room)); r.Status != 400 || r.Get("errcode").String() != "M_MISSING_PARAM" {
		t.Fatalf("state_ids without event_id: %s", r)
	}
	if r := get(rs.peer, "/_matrix/federation/v1/event_auth/!other:x/"+url.PathEscape(later)); r.Status != 404 {
		t.Fatalf("event_auth in another room: %s", r)
	}

	// A server with nobody in the room gets nothing.
	stranger := hstest.NewPeer(t, ca)
	for _, path := range []string{"/_matrix/federation/v1/event/" + url.PathEscape(later),
		"/_matrix/federation/v1/state_ids/" + url.PathEscape(room) + "?event_id=" + url.QueryEscape(later),
		"/_matrix/federation/v1/event_auth/" + url.PathEscape(room) + "/" + url.PathEscape(later)} {
		if r := get(stranger, path); r.Status != 403 || r.Get("errcode").String() != "M_FORBIDDEN" {
			t.Fatalf("%s for a server not in the room: %s", path, r)
		}
	}

	// The room bans IP literals: the peer (127.0.0.1:PORT) is refused, its PDUs too.
	alice.SetState(t, room, "m.room.server_acl", "", map[string]any{"allow": []string{"*"}, "allow_ip_literals": false})
	if r := get(rs.peer, "/_matrix/federation/v1/event/"+url.PathEscape(later)); r.Status != 403 {
		t.Fatalf("event for a server the ACL denies: %s", r)
	}
	msg, msgID, _ := rs.event(alice, room, bob, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "still here?"})
	if r := rs.send("", msg); !strings.Contains(r.Get("pdus").Get(gjsonPath(string(msgID))+".error").String(), "banned") {
		t.Fatalf("PDU from a server the ACL denies: %s", r)
	}
}
