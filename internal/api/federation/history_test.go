package federation_test

import (
	"net/url"
	"testing"

	"porthole/internal/hstest"
)

// /state, /get_missing_events and /backfill serve a room's history to a server in it:
// bounded, in the right order, redacted where the history visibility hides an event.
func TestServeHistory(t *testing.T) {
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
	var msgs []string
	for _, body := range []string{"m1", "m2", "m3", "m4", "m5"} {
		msgs = append(msgs, alice.Send(t, room, body))
	}
	last := msgs[len(msgs)-1]
	esc := url.PathEscape(room)

	// /state at the last message: the room's state as events, with their auth chain.
	r := rs.peer.Do(t, s, "GET", "/_matrix/federation/v1/state/"+esc+"?event_id="+url.QueryEscape(last), nil)
	types := map[string]bool{}
	for _, e := range r.Get("pdus").Array() {
		types[e.Get("type").String()] = true
	}
	if r.Status != 200 || len(r.Get("pdus").Array()) != len(roomState(t, alice, room)) || !types["m.room.create"] || !types["m.room.member"] || len(r.Get("auth_chain").Array()) == 0 {
		t.Fatalf("state: %s", r)
	}
	if r := rs.peer.Do(t, s, "GET", "/_matrix/federation/v1/state/"+esc, nil); r.Status != 400 || r.Get("errcode").String() != "M_MISSING_PARAM" {
		t.Fatalf("state without event_id: %s", r)
	}

	// get_missing_events from the last message back to the join: m1..m4, oldest first,
	// the latest event itself left out.
	r = rs.peer.Do(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc, map[string]any{
		"earliest_events": []string{string(joinID)}, "latest_events": []string{last}, "limit": 10})
	evs := r.Get("events").Array()
	if r.Status != 200 || len(evs) != 4 || evs[0].Get("content.body").String() != "m1" || evs[3].Get("content.body").String() != "m4" {
		t.Fatalf("get_missing_events: %s", r)
	}
	// Bounded by limit, nearest to the latest first kept.
	r = rs.peer.Do(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc, map[string]any{
		"earliest_events": []string{}, "latest_events": []string{last}, "limit": 2})
	if evs := r.Get("events").Array(); r.Status != 200 || len(evs) != 2 || evs[0].Get("content.body").String() != "m3" || evs[1].Get("content.body").String() != "m4" {
		t.Fatalf("get_missing_events with limit 2: %s", r)
	}
	// min_depth stops the walk.
	r = rs.peer.Do(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc, map[string]any{
		"earliest_events": []string{}, "latest_events": []string{last}, "min_depth": r.Get("events.1.depth").Int()})
	if evs := r.Get("events").Array(); r.Status != 200 || len(evs) != 1 || evs[0].Get("content.body").String() != "m4" {
		t.Fatalf("get_missing_events with min_depth: %s", r)
	}
	// Walking past the join: the message sent before bob's server joined is redacted.
	r = rs.peer.Do(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc, map[string]any{
		"earliest_events": []string{}, "latest_events": []string{msgs[0]}, "limit": 20})
	found := false
	for _, e := range r.Get("events").Array() {
		if e.Get("event_id").String() == early || (e.Get("type").String() == "m.room.message" && !e.Get("content.body").Exists()) {
			found = true
		}
		if e.Get("content.body").String() == "before bob's server joined" {
			t.Fatalf("hidden event served in full: %s", r)
		}
	}
	if r.Status != 200 || !found {
		t.Fatalf("get_missing_events past the join: %s", r)
	}
	if r := rs.peer.Do(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc, map[string]any{"latest_events": []string{last}}); r.Status != 400 {
		t.Fatalf("get_missing_events without earliest_events: %s", r)
	}

	// backfill from the last message: it and those before, deepest first.
	r = rs.peer.Do(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc+"?v="+url.QueryEscape(last)+"&limit=3", nil)
	pdus := r.Get("pdus").Array()
	if r.Status != 200 || len(pdus) != 3 || pdus[0].Get("content.body").String() != "m5" || pdus[2].Get("content.body").String() != "m3" || r.Get("origin").String() != s.Name {
		t.Fatalf("backfill: %s", r)
	}
	r = rs.peer.Do(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc+"?v="+url.QueryEscape(msgs[0])+"&limit=1000", nil)
	pdus = r.Get("pdus").Array()
	if r.Status != 200 || len(pdus) < 6 || pdus[len(pdus)-1].Get("type").String() != "m.room.create" {
		t.Fatalf("backfill to the start: %s", r)
	}
	for _, e := range pdus {
		if e.Get("content.body").String() == "before bob's server joined" {
			t.Fatalf("hidden event backfilled in full: %s", r)
		}
	}
	if r := rs.peer.Do(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc+"?v="+url.QueryEscape(last), nil); r.Status != 400 || r.Get("errcode").String() != "M_MISSING_PARAM" {
		t.Fatalf("backfill without limit: %s", r)
	}

	// A server with nobody in the room gets nothing.
	stranger := hstest.NewPeer(t, ca)
	if r := stranger.Do(t, s, "GET", "/_matrix/federation/v1/backfill/"+esc+"?v="+url.QueryEscape(last)+"&limit=5", nil); r.Status != 403 {
		t.Fatalf("backfill for a server not in the room: %s", r)
	}
	if r := stranger.Do(t, s, "POST", "/_matrix/federation/v1/get_missing_events/"+esc, map[string]any{"earliest_events": []string{}, "latest_events": []string{last}}); r.Status != 403 {
		t.Fatalf("get_missing_events for a server not in the room: %s", r)
	}
	if r := stranger.Do(t, s, "GET", "/_matrix/federation/v1/state/"+esc+"?event_id="+url.QueryEscape(last), nil); r.Status != 403 {
		t.Fatalf("state for a server not in the room: %s", r)
	}
}
