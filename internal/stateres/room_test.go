package stateres_test

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/stateres"
)

const (
	alice   = "@alice:example.com"
	bob     = "@bob:example.com"
	charlie = "@charlie:example.com"
	evelyn  = "@evelyn:example.com"
	zara    = "@zara:example.com"
)

// room builds the events of one test room with real event IDs (reference hashes), named
// for the tests.
type room struct {
	t       testing.TB
	version id.RoomVersion
	roomID  id.RoomID
	pdus    map[id.EventID]*pdu.PDU
	ids     map[string]id.EventID
	names   map[id.EventID]string
	after   map[string]stateres.StateMap // the state after each event built by dag
	ts      int64
	fetches int
}

func newRoom(t testing.TB, version id.RoomVersion) *room {
	r := &room{t: t, version: version, pdus: map[id.EventID]*pdu.PDU{}, ids: map[string]id.EventID{},
		names: map[id.EventID]string{}, after: map[string]stateres.StateMap{}}
	if !version.RoomIDIsCreateEventID() {
		r.roomID = "!test:example.com"
	}
	return r
}

func sk(s string) *string { return &s }

// build adds a named event with the given auth and prev events (names).
func (r *room) build(name, sender, typ string, stateKey *string, content any, auth, prev []string) id.EventID {
	r.t.Helper()
	raw, err := json.Marshal(content, json.Deterministic(true))
	if err != nil {
		r.t.Fatal(err)
	}
	r.ts++
	p := &pdu.PDU{Type: typ, StateKey: stateKey, Sender: id.UserID(sender), Content: jsontext.Value(raw), RoomID: r.roomID,
		OriginServerTS: r.ts, AuthEvents: []id.EventID{}, PrevEvents: []id.EventID{}}
	if typ == "m.room.create" && r.version.RoomIDIsCreateEventID() {
		p.RoomID = ""
	}
	for _, a := range auth {
		p.AuthEvents = append(p.AuthEvents, r.id(a))
	}
	for _, x := range prev {
		p.PrevEvents = append(p.PrevEvents, r.id(x))
		p.Depth = max(p.Depth, r.pdus[r.id(x)].Depth+1)
	}
	if err := p.FillContentHash(); err != nil {
		r.t.Fatal(err)
	}
	eid := id.EventID("$" + name + ":example.com") // versions 1 and 2 name their events
	if r.version.EventIDFormat() != id.EventIDFormatCustom {
		if eid, err = p.GetEventID(r.version); err != nil {
			r.t.Fatal(err)
		}
	}
	if _, dup := r.ids[name]; dup {
		r.t.Fatalf("event %s built twice", name)
	}
	p.InternalMeta.EventID = eid
	if typ == "m.room.create" && r.version.RoomIDIsCreateEventID() {
		r.roomID = id.RoomID("!" + string(eid)[1:])
	}
	r.pdus[eid], r.ids[name], r.names[eid] = p, eid, name
	return eid
}

func (r *room) id(name string) id.EventID {
	r.t.Helper()
	eid, ok := r.ids[name]
	if !ok {
		r.t.Fatalf("no event %s", name)
	}
	return eid
}

func (r *room) fetch(ids []id.EventID) ([]*pdu.PDU, error) {
	r.fetches++
	out := make([]*pdu.PDU, len(ids))
	for i, x := range ids {
		if p := r.pdus[x]; p != nil {
			c := *p
			out[i] = &c
		}
	}
	return out, nil
}

// state is a state map of the named events.
func (r *room) state(names ...string) stateres.StateMap {
	r.t.Helper()
	out := stateres.StateMap{}
	for _, n := range names {
		p := r.pdus[r.id(n)]
		out[stateres.StateKey{Type: p.Type, StateKey: *p.StateKey}] = r.id(n)
	}
	return out
}

func (r *room) resolve(sets ...stateres.StateMap) stateres.StateMap {
	r.t.Helper()
	got, err := stateres.Resolve(r.version, sets, r.fetch, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	return got
}

// show names a state's events, sorted, for messages.
func (r *room) show(s stateres.StateMap) string {
	var out []string
	for k, v := range s {
		n := r.names[v]
		if n == "" {
			n = string(v)
		}
		out = append(out, fmt.Sprintf("%s/%s=%s", k.Type, k.StateKey, n))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func (r *room) expect(got, want stateres.StateMap) {
	r.t.Helper()
	if !sameState(got, want) {
		r.t.Fatalf("resolved state:\n got  %s\n want %s", r.show(got), r.show(want))
	}
}

func sameState(a, b stateres.StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// fake is an event of a dag before its place in the graph is known.
type fake struct {
	name, sender, typ string
	stateKey          *string
	content           any
}

func member(name, sender, target, membership string) fake {
	return fake{name, sender, "m.room.member", sk(target), map[string]any{"membership": membership}}
}
func power(name, sender string, content any) fake {
	return fake{name, sender, "m.room.power_levels", sk(""), content}
}
func topic(name, sender string) fake {
	return fake{name, sender, "m.room.topic", sk(""), map[string]any{"topic": name}}
}
func message(name, sender string) fake {
	return fake{name, sender, "m.room.message", nil, map[string]any{"body": name}}
}

// initialEvents start every dag (the graph shape of Synapse's state resolution tests):
// alice creates a public room, bob, charlie and zara join.
func (r *room) initialEvents() ([]fake, []string) {
	createContent := map[string]any{"creator": alice, "room_version": string(r.version)}
	ipower := map[string]any{"users": map[string]int{alice: 100}}
	if r.version.PrivilegedRoomCreators() {
		ipower = map[string]any{"users": map[string]int{}}
	}
	return []fake{
		{"CREATE", alice, "m.room.create", sk(""), createContent},
		member("IMA", alice, alice, "join"),
		power("IPOWER", alice, ipower),
		{"IJR", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "public"}},
		member("IMB", bob, bob, "join"),
		member("IMC", charlie, charlie, "join"),
		member("IMZ", zara, zara, "join"),
		message("START", zara),
		message("END", zara),
	}, []string{"START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"}
}

// dag builds the initial events and events with prev edges given as chains from the
// latest ("END", "B", "A" is END → B → A), each event's auth events chosen from the state
// before it, which is resolved when it has several prev events. It returns the state
// before END.
func (r *room) dag(events []fake, chains ...[]string) stateres.StateMap {
	r.t.Helper()
	initial, initialChain := r.initialEvents()
	byName := map[string]fake{}
	prevs := map[string][]string{}
	for _, e := range append(initial, events...) {
		byName[e.name] = e
		prevs[e.name] = nil
	}
	for _, chain := range append([][]string{initialChain}, chains...) {
		for i := 0; i+1 < len(chain); i++ {
			if !slices.Contains(prevs[chain[i]], chain[i+1]) {
				prevs[chain[i]] = append(prevs[chain[i]], chain[i+1])
			}
		}
	}
	// Events in the topological order of their prev events, the smallest name first
	// (which also orders their timestamps).
	done := map[string]bool{}
	for len(done) < len(byName) {
		var ready []string
		for n, ps := range prevs {
			if done[n] {
				continue
			}
			ok := true
			for _, p := range ps {
				ok = ok && done[p]
			}
			if ok {
				ready = append(ready, n)
			}
		}
		if len(ready) == 0 {
			r.t.Fatal("the dag has a cycle")
		}
		slices.Sort(ready)
		n := ready[0]
		done[n] = true
		e := byName[n]
		var sets []stateres.StateMap
		for _, p := range prevs[n] {
			sets = append(sets, r.after[p])
		}
		before := r.resolve(sets...)
		if n == "END" {
			return before
		}
		probe := &pdu.PDU{Type: e.typ, StateKey: e.stateKey, Sender: id.UserID(e.sender)}
		if raw, err := json.Marshal(e.content); err == nil {
			probe.Content = raw
		}
		var auth []string
		for _, k := range probe.AuthEventSelection(r.version) {
			if x, ok := before[k]; ok {
				auth = append(auth, r.names[x])
			}
		}
		eid := r.build(n, e.sender, e.typ, e.stateKey, e.content, auth, prevs[n])
		after := maps(before)
		if e.stateKey != nil {
			after[stateres.StateKey{Type: e.typ, StateKey: *e.stateKey}] = eid
		}
		r.after[n] = after
	}
	r.t.Fatal("no END event")
	return nil
}

func maps(m stateres.StateMap) stateres.StateMap {
	out := make(stateres.StateMap, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// changed is the part of end that differs from the state after START, plus the keys of
// the named events (what Synapse's tests compare).
func (r *room) changed(end stateres.StateMap, names ...string) (got, want stateres.StateMap) {
	start := r.after["START"]
	want = r.state(names...)
	got = stateres.StateMap{}
	for k, v := range end {
		if _, named := want[k]; named || start[k] != v {
			got[k] = v
		}
	}
	return got, want
}

// probeSelection is the auth event selection for an event not built yet.
func probeSelection(r *room, e fake) pdu.AuthEventSelection {
	probe := &pdu.PDU{Type: e.typ, StateKey: e.stateKey, Sender: id.UserID(e.sender)}
	if raw, err := json.Marshal(e.content); err == nil {
		probe.Content = raw
	}
	return probe.AuthEventSelection(r.version)
}
