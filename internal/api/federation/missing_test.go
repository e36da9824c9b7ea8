package federation_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
)

// A PDU whose prev or auth events are unknown here: what it lacks is asked of the server
// that sent it (get_missing_events, then /state_ids and /event; /event_auth), and when
// that server cannot say, the PDU gets an error, promptly.
func TestReceiveFillsGaps(t *testing.T) {
	s := hstest.NewFederation(t, 1)[0]
	alice := s.Register(t, "alice")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	rs := newRemote(t, s)
	bob := rs.user("bob")
	join, joinID, _ := rs.event(alice, room, bob, "m.room.member", sk(bob), map[string]string{"membership": "join"})
	if r := rs.send("", join); r.Get("pdus").Get(gjsonPath(string(joinID))).Raw != "{}" {
		t.Fatalf("join: %s", r)
	}

	// What the peer answers, by path prefix.
	var mu sync.Mutex
	answers := map[string]any{}
	rs.peer.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for prefix, a := range answers {
			if strings.HasPrefix(r.URL.Path, prefix) {
				raw, _ := json.Marshal(a)
				w.Header().Set("Content-Type", "application/json")
				w.Write(raw)
				return
			}
		}
		w.WriteHeader(404)
		w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"nothing here"}`))
	})
	answer := func(m map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		answers = m
	}
	seen := func(eventID id.EventID) bool {
		return alice.Do(t, "GET", hstest.Room(room)+"/event/"+url.PathEscape(string(eventID)), nil).Status == 200
	}
	head := func() (id.EventID, int64) {
		r, err := s.Server.Store().Room(t.Context(), room)
		if err != nil {
			t.Fatal(err)
		}
		return id.EventID(r.HeadEventID), r.Depth
	}
	msg := func(body string) map[string]string { return map[string]string{"msgtype": "m.text", "body": body} }

	// A gap of two: filled through get_missing_events.
	prev, depth := head()
	m1, m1ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("m1"), prev, depth+1)
	m2, m2ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("m2"), m1ID, depth+2)
	m3, m3ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("m3"), m2ID, depth+3)
	answer(map[string]any{"/_matrix/federation/v1/get_missing_events/": map[string]any{"events": []json.RawMessage{m1, m2}}})
	if r := rs.send("", m3); r.Get("pdus").Get(gjsonPath(string(m3ID))).Raw != "{}" {
		t.Fatalf("event after a gap: %s", r)
	}
	for _, e := range []id.EventID{m1ID, m2ID, m3ID} {
		if !seen(e) {
			t.Fatalf("%s not in the room after the gap was filled", e)
		}
	}

	// A gap get_missing_events does not fill: the state before the event is fetched.
	prev, depth = head()
	_, n1ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("n1"), prev, depth+1)
	n2, n2ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("n2"), n1ID, depth+2)
	n3, n3ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("n3"), n2ID, depth+3)
	var stateIDs []id.EventID
	for _, v := range roomState(t, alice, room) {
		stateIDs = append(stateIDs, v)
	}
	answer(map[string]any{
		"/_matrix/federation/v1/get_missing_events/": map[string]any{"events": []json.RawMessage{n2}},
		"/_matrix/federation/v1/state_ids/":          map[string]any{"pdu_ids": stateIDs, "auth_chain_ids": []string{}},
	})
	if r := rs.send("", n3); r.Get("pdus").Get(gjsonPath(string(n3ID))).Raw != "{}" {
		t.Fatalf("event after a wide gap: %s", r)
	}
	if !seen(n3ID) {
		t.Fatal("event persisted with the fetched state is not in the room")
	}

	// An unknown auth event (carol's join, never sent): fetched through /event_auth, then
	// placed in the timeline through get_missing_events.
	carol := rs.user("carol")
	prev, depth = head()
	cj, cjID, _ := rs.eventAfter(alice, room, carol, "m.room.member", sk(carol), map[string]string{"membership": "join"}, prev, depth+1)
	_, _, cmp := rs.eventAfter(alice, room, carol, "m.room.message", nil, msg("carol here"), cjID, depth+2)
	// Its auth events are the room's state without carol's join: add it, sign again.
	cmp.AuthEvents = append(cmp.AuthEvents, cjID)
	cmp.Signatures, cmp.Hashes = nil, nil
	if err := cmp.Sign("10", rs.peer.Name, rs.peer.Key.ID, rs.peer.Key.Priv); err != nil {
		t.Fatal(err)
	}
	cm, _ := json.Marshal(cmp)
	cmID, _ := cmp.GetEventID("10")
	answer(map[string]any{
		"/_matrix/federation/v1/event_auth/":         map[string]any{"auth_chain": []json.RawMessage{cj}},
		"/_matrix/federation/v1/get_missing_events/": map[string]any{"events": []json.RawMessage{cj}},
	})
	if r := rs.send("", cm); r.Get("pdus").Get(gjsonPath(string(cmID))).Raw != "{}" {
		t.Fatalf("message after a join: %s", r)
	}
	if !seen(cjID) || !seen(cmID) {
		t.Fatal("fetched join or its message not in the room")
	}

	// An origin that answers nothing: the PDU gets an error saying why.
	prev, depth = head()
	_, x1ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("x1"), prev, depth+1)
	x2, x2ID, _ := rs.eventAfter(alice, room, bob, "m.room.message", nil, msg("x2"), x1ID, depth+2)
	answer(map[string]any{})
	r := rs.send("", x2)
	if e := r.Get("pdus").Get(gjsonPath(string(x2ID)) + ".error").String(); !strings.Contains(e, "state before the event could not be fetched") {
		t.Fatalf("event after a gap nobody fills: %s", r)
	}
	if seen(x2ID) {
		t.Fatal("event after an unfilled gap is in the room")
	}
}
