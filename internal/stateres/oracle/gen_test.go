package oracle

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"fmt"
	"math/rand/v2"
	"slices"

	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/stateres"
)

// The generator: a room whose members join, leave, invite, kick, ban and unban, change
// power levels, join rules and the topic, on 2–4 branches that fork from one another
// (and sometimes merge). Every event is allowed by the auth rules against the state of
// its branch, as an honest server would send it; states where branches merge are
// resolved by internal/stateres.

var users = []string{"@alice:a.test", "@bob:b.test", "@carol:a.test", "@dave:c.test", "@erin:b.test", "@frank:c.test"}

type genRoom struct {
	rng     *rand.Rand
	version id.RoomVersion
	roomID  id.RoomID
	pdus    map[id.EventID]*pdu.PDU
	order   []id.EventID // in creation order
	after   map[id.EventID]stateres.StateMap
	ts      int64
}

// head is the end of a branch.
type head struct {
	prev  []id.EventID
	depth int64
	state stateres.StateMap
}

func newGenRoom(rng *rand.Rand, version id.RoomVersion) *genRoom {
	g := &genRoom{rng: rng, version: version, roomID: "!fork:a.test", pdus: map[id.EventID]*pdu.PDU{}, after: map[id.EventID]stateres.StateMap{}}
	if version.RoomIDIsCreateEventID() {
		g.roomID = ""
	}
	return g
}

func (g *genRoom) fetch(ids []id.EventID) ([]*pdu.PDU, error) {
	out := make([]*pdu.PDU, len(ids))
	for i, x := range ids {
		if p := g.pdus[x]; p != nil {
			c := *p
			out[i] = &c
		}
	}
	return out, nil
}

func (g *genRoom) fetchFound(ids []id.EventID) ([]*pdu.PDU, error) {
	all, _ := g.fetch(ids)
	return slices.DeleteFunc(all, func(p *pdu.PDU) bool { return p == nil }), nil
}

// try builds an event on h and, when the auth rules allow it there, adds it and moves h.
func (g *genRoom) try(h *head, sender, evType string, stateKey *string, content any) bool {
	raw, err := json.Marshal(content, json.Deterministic(true))
	if err != nil {
		panic(err)
	}
	// Mostly increasing timestamps, with ties now and then to exercise the ID tie-break.
	g.ts += int64(g.rng.IntN(3))
	p := &pdu.PDU{Type: evType, StateKey: stateKey, Sender: id.UserID(sender), Content: jsontext.Value(raw), RoomID: g.roomID,
		OriginServerTS: 1_700_000_000_000 + g.ts, Depth: h.depth + 1, PrevEvents: slices.Clone(h.prev), AuthEvents: []id.EventID{}}
	if p.PrevEvents == nil {
		p.PrevEvents = []id.EventID{}
	}
	var authEvents []*pdu.PDU
	for _, k := range p.AuthEventSelection(g.version) {
		if x, ok := h.state[k]; ok {
			p.AuthEvents = append(p.AuthEvents, x)
			authEvents = append(authEvents, g.pdus[x])
		}
	}
	if evType != "m.room.create" {
		if authEvents == nil {
			authEvents = []*pdu.PDU{}
		}
		if !allowed(g.version, p, authEvents, g.fetchFound) {
			return false
		}
	}
	if err := p.FillContentHash(); err != nil {
		panic(err)
	}
	eid, err := p.GetEventID(g.version)
	if err != nil {
		panic(err)
	}
	p.InternalMeta.EventID = eid
	if evType == "m.room.create" && g.version.RoomIDIsCreateEventID() {
		g.roomID = id.RoomID("!" + string(eid)[1:])
	}
	g.pdus[eid] = p
	g.order = append(g.order, eid)
	after := make(stateres.StateMap, len(h.state)+1)
	for k, v := range h.state {
		after[k] = v
	}
	if stateKey != nil {
		after[stateres.StateKey{Type: evType, StateKey: *stateKey}] = eid
	}
	g.after[eid] = after
	h.prev, h.depth, h.state = []id.EventID{eid}, p.Depth, after
	return true
}

func (g *genRoom) content(x id.EventID) map[string]any {
	var c map[string]any
	if p := g.pdus[x]; p != nil {
		_ = json.Unmarshal(p.Content, &c)
	}
	if c == nil {
		c = map[string]any{}
	}
	return c
}

func (g *genRoom) membership(h *head, user string) string {
	x, ok := h.state[stateres.StateKey{Type: "m.room.member", StateKey: user}]
	if !ok {
		return "leave"
	}
	m, _ := g.content(x)["membership"].(string)
	return m
}

func (g *genRoom) pick(list []string) string { return list[g.rng.IntN(len(list))] }

func mem(m string) map[string]string { return map[string]string{"membership": m} }

// base builds the room up to the fork point: alice creates it public, makes bob a
// moderator, and some of the others join.
func (g *genRoom) base() *head {
	h := &head{state: stateres.StateMap{}}
	alice, bob := users[0], users[1]
	create := map[string]any{"room_version": string(g.version)}
	if g.version.CreatorInContent() {
		create["creator"] = alice
	}
	must(g.try(h, alice, "m.room.create", sk(""), create))
	must(g.try(h, alice, "m.room.member", sk(alice), mem("join")))
	pl := map[string]any{"users": map[string]int{alice: 100, bob: 50}}
	if g.version.PrivilegedRoomCreators() {
		pl = map[string]any{"users": map[string]int{bob: 50}}
	}
	must(g.try(h, alice, "m.room.power_levels", sk(""), pl))
	must(g.try(h, alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "public"}))
	for _, u := range users[1:] {
		if u == bob || g.rng.IntN(3) > 0 {
			must(g.try(h, u, "m.room.member", sk(u), mem("join")))
		}
	}
	for range g.rng.IntN(3) {
		g.step(h)
	}
	return h
}

func must(ok bool) {
	if !ok {
		panic("a base event of the generated room was refused")
	}
}

func sk(s string) *string { return &s }

// step adds one random event the auth rules allow on h (it gives up after a few tries).
func (g *genRoom) step(h *head) {
	for range 20 {
		sender, target := g.pick(users), g.pick(users)
		var ok bool
		switch r := g.rng.IntN(100); {
		case r < 15:
			ok = g.try(h, sender, "m.room.member", sk(sender), mem("join"))
		case r < 22:
			ok = g.try(h, sender, "m.room.member", sk(sender), mem("leave"))
		case r < 30:
			ok = g.try(h, sender, "m.room.member", sk(target), mem("invite"))
		case r < 38:
			ok = target != sender && g.try(h, sender, "m.room.member", sk(target), mem("leave")) // kick or unban
		case r < 48:
			ok = target != sender && g.try(h, sender, "m.room.member", sk(target), mem("ban"))
		case r < 68:
			ok = g.try(h, sender, "m.room.power_levels", sk(""), g.newPowerLevels(h, target))
		case r < 78:
			rule := g.pick([]string{"public", "invite"})
			ok = g.try(h, sender, "m.room.join_rules", sk(""), map[string]string{"join_rule": rule})
		case r < 93:
			ok = g.try(h, sender, "m.room.topic", sk(""), map[string]string{"topic": fmt.Sprintf("topic %d", g.rng.IntN(1000))})
		default:
			ok = g.try(h, sender, "m.room.name", sk(""), map[string]string{"name": fmt.Sprintf("name %d", g.rng.IntN(1000))})
		}
		if ok {
			return
		}
	}
}

// newPowerLevels is h's power levels with one change: a user's level or a threshold.
func (g *genRoom) newPowerLevels(h *head, target string) map[string]any {
	c := g.content(h.state[stateres.StateKey{Type: "m.room.power_levels"}])
	users, _ := c["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	c["users"] = users
	level := []int{0, 10, 50, 75, 100}[g.rng.IntN(5)]
	switch g.rng.IntN(6) {
	case 0, 1, 2:
		if g.version.PrivilegedRoomCreators() && target == users0() {
			delete(users, target)
		} else if level == 0 && g.rng.IntN(2) == 0 {
			delete(users, target)
		} else {
			users[target] = level
		}
	case 3:
		c[g.pick([]string{"ban", "kick", "invite", "state_default"})] = level
	case 4:
		events, _ := c["events"].(map[string]any)
		if events == nil {
			events = map[string]any{}
		}
		events[g.pick([]string{"m.room.topic", "m.room.power_levels", "m.room.join_rules", "m.room.name"})] = level
		c["events"] = events
	default:
		c["users_default"] = []int{0, 0, 10, 50}[g.rng.IntN(4)]
	}
	return c
}

func users0() string { return users[0] }

// fork generates a room and returns the states at the heads of 2–4 branches.
func (g *genRoom) fork() []stateres.StateMap {
	base := g.base()
	heads := []*head{}
	points := []head{*base} // where a new branch may start
	n := 2 + g.rng.IntN(3)
	for len(heads) < n {
		start := points[g.rng.IntN(len(points))]
		h := &head{prev: start.prev, depth: start.depth, state: start.state}
		if len(heads) >= 2 && g.rng.IntN(5) == 0 {
			// A branch that first merges two others.
			a, b := heads[g.rng.IntN(len(heads))], heads[g.rng.IntN(len(heads))]
			if a != b {
				merged, err := stateres.Resolve(g.version, []stateres.StateMap{a.state, b.state}, g.fetch, nil)
				if err != nil {
					panic(err)
				}
				h = &head{prev: []id.EventID{a.prev[0], b.prev[0]}, depth: max(a.depth, b.depth), state: merged}
			}
		}
		for range 1 + g.rng.IntN(8) {
			g.step(h)
			points = append(points, *h)
		}
		heads = append(heads, h)
	}
	sets := make([]stateres.StateMap, len(heads))
	for i, h := range heads {
		sets[i] = h.state
	}
	return sets
}

// allowed runs the auth rules; a panic in them (see stateres.authorize) is a refusal.
func allowed(version id.RoomVersion, p *pdu.PDU, authEvents []*pdu.PDU, fetch func([]id.EventID) ([]*pdu.PDU, error)) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return eventauth.Authorize(version, p, authEvents, fetch, nil) == nil
}
