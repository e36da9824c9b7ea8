package stateres

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"go.mau.fi/util/exgjson"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// node is an event of the resolution with the auth events we have of it.
type node struct {
	id   id.EventID
	p    *pdu.PDU
	i    int     // index in graph.all, for per-resolution marks
	auth []*node // known auth events, deduplicated; in v12 the create event too
	// linked: auth is filled in; pending: queued for linking.
	linked, pending bool
	// senderPower, once known (powerKnown), is the sender's power level by the event's
	// own auth events (the first tie-break of the reverse topological power ordering).
	senderPower int64
	powerKnown  bool
}

func (n *node) rejected() bool { return n.p.InternalMeta.Rejected }

func (n *node) key() (StateKey, bool) {
	if n.p.StateKey == nil {
		return StateKey{}, false
	}
	return StateKey{Type: n.p.Type, StateKey: *n.p.StateKey}, true
}

// graph holds the events of one resolution, loaded through fetch in batches.
type graph struct {
	version id.RoomVersion
	fetch   Fetch
	getKey  pdu.GetKeyFunc
	byID    map[id.EventID]*node
	absent  map[id.EventID]bool
	all     []*node
}

func newGraph(version id.RoomVersion, fetch Fetch, getKey pdu.GetKeyFunc) *graph {
	return &graph{version: version, fetch: fetch, getKey: getKey, byID: map[id.EventID]*node{}, absent: map[id.EventID]bool{}}
}

func noKeys(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
	return "", time.Time{}, errors.New("no signing keys available to state resolution")
}

// load fetches, in one call, those of ids not yet known.
func (g *graph) load(ids []id.EventID) error {
	var need []id.EventID
	seen := map[id.EventID]bool{}
	for _, x := range ids {
		if g.byID[x] == nil && !g.absent[x] && !seen[x] {
			seen[x] = true
			need = append(need, x)
		}
	}
	if len(need) == 0 {
		return nil
	}
	if len(g.all)+len(need) > MaxEvents {
		return fmt.Errorf("state resolution needs more than %d events", MaxEvents)
	}
	slices.Sort(need) // a stable walk for a given input
	evs, err := g.fetch(need)
	if err != nil {
		return err
	}
	if len(evs) != len(need) {
		return fmt.Errorf("fetch returned %d events for %d IDs", len(evs), len(need))
	}
	for i, p := range evs {
		if p == nil {
			g.absent[need[i]] = true
			continue
		}
		n := &node{id: need[i], p: p, i: len(g.all)}
		if p.InternalMeta.EventID != "" && p.InternalMeta.EventID != need[i] {
			return fmt.Errorf("fetch returned %s for %s", p.InternalMeta.EventID, need[i])
		}
		g.byID[need[i]] = n
		g.all = append(g.all, n)
	}
	return nil
}

// stateNodes loads the events of the given IDs, all of which must exist.
func (g *graph) stateNodes(ids []id.EventID) ([]*node, error) {
	if err := g.load(ids); err != nil {
		return nil, err
	}
	out := make([]*node, 0, len(ids))
	for _, x := range ids {
		n := g.byID[x]
		if n == nil {
			return nil, fmt.Errorf("%w: %s", ErrUnknownEvent, x)
		}
		out = append(out, n)
	}
	return out, nil
}

// authIDs are the events an event's auth chain continues with: its auth events and, in
// room versions whose room ID names the create event, that event.
func (g *graph) authIDs(n *node) []id.EventID {
	ids := n.p.AuthEvents
	if c := g.roomCreateID(n); c != "" {
		ids = append(slices.Clip(ids), c)
	}
	return ids
}

// roomCreateID is the create event of n's room when the room ID names it (v12), else "".
func (g *graph) roomCreateID(n *node) id.EventID {
	if !g.version.RoomIDIsCreateEventID() || n.p.Type == "m.room.create" || len(n.p.RoomID) < 2 {
		return ""
	}
	return id.EventID("$" + string(n.p.RoomID)[1:])
}

// loadAuthChains loads the auth chains of the given events, one fetch per generation.
func (g *graph) loadAuthChains(start []*node) error {
	frontier := slices.Clone(start)
	for len(frontier) > 0 {
		var need []id.EventID
		for _, n := range frontier {
			if !n.linked {
				need = append(need, g.authIDs(n)...)
			}
		}
		if err := g.load(need); err != nil {
			return err
		}
		var next []*node
		for _, n := range frontier {
			if n.linked {
				continue
			}
			n.linked, n.pending = true, false
			for _, a := range g.authIDs(n) {
				m := g.byID[a]
				if m == nil || slices.Contains(n.auth, m) {
					continue
				}
				n.auth = append(n.auth, m)
				if !m.linked && !m.pending {
					m.pending = true
					next = append(next, m)
				}
			}
		}
		frontier = next
	}
	return nil
}

// topo lists every loaded event with auth events before the events that cite them.
func (g *graph) topo() []*node {
	const (
		unseen = iota
		open
		done
	)
	state := make([]uint8, len(g.all))
	out := make([]*node, 0, len(g.all))
	type frame struct {
		n    *node
		next int
	}
	var stack []frame
	for _, root := range g.all {
		if state[root.i] != unseen {
			continue
		}
		stack = append(stack, frame{n: root})
		state[root.i] = open
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next < len(top.n.auth) {
				a := top.n.auth[top.next]
				top.next++
				if state[a.i] == unseen { // an open one is a cycle: that edge is ignored
					state[a.i] = open
					stack = append(stack, frame{n: a})
				}
				continue
			}
			state[top.n.i] = done
			out = append(out, top.n)
			stack = stack[:len(stack)-1]
		}
	}
	return out
}

// authFetch serves eventauth's own look-ups (the create event of a v12 room) from the
// graph, leaving out events that do not exist.
func (g *graph) authFetch(ids []id.EventID) ([]*pdu.PDU, error) {
	if err := g.load(ids); err != nil {
		return nil, err
	}
	out := make([]*pdu.PDU, 0, len(ids))
	for _, x := range ids {
		if n := g.byID[x]; n != nil {
			out = append(out, n.p)
		}
	}
	return out, nil
}

// allowed reports whether n passes the auth rules with its auth events taken from state,
// or, for a key state lacks (or holds a rejected event for) and fallback is set, from n's
// own auth events that were not rejected.
func (g *graph) allowed(n *node, state StateMap, fallback bool) bool {
	sel := n.p.AuthEventSelection(g.version)
	authEvents := make([]*pdu.PDU, 0, len(sel))
	for _, k := range sel {
		if x, ok := state[k]; ok {
			if m := g.byID[x]; m != nil && !(fallback && m.rejected()) {
				authEvents = append(authEvents, m.p)
				continue
			}
		}
		if !fallback {
			continue
		}
		for _, a := range n.auth {
			if ak, ok := a.key(); ok && ak == k && !a.rejected() {
				authEvents = append(authEvents, a.p)
				break
			}
		}
	}
	return authorize(g.version, n.p, authEvents, g.authFetch, g.getKey) == nil
}

// authorize is eventauth.Authorize, with a panic in it taken as a refusal: mautrix
// v0.32.0 dereferences nil when power levels remove a user whose level equals the
// sender's (which the rules refuse).
func authorize(version id.RoomVersion, p *pdu.PDU, authEvents []*pdu.PDU, fetch Fetch, getKey pdu.GetKeyFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("auth rules panicked: %v", r)
		}
	}()
	return eventauth.Authorize(version, p, authEvents, fetch, getKey)
}

// creatorPowerLevel stands for the infinite power of v12 room creators.
const creatorPowerLevel = math.MaxInt64

// power is the power level of n's sender by n's own auth events: the level its power
// levels event gives, or without one 100 for the room's creator; in v12 the creators'
// is infinite.
func (g *graph) power(n *node) int64 {
	if n.powerKnown {
		return n.senderPower
	}
	n.powerKnown = true
	var pl, create *node
	for _, a := range n.auth {
		switch k, _ := a.key(); k {
		case StateKey{Type: "m.room.power_levels"}:
			if pl == nil {
				pl = a
			}
		case StateKey{Type: "m.room.create"}:
			if create == nil {
				create = a
			}
		}
	}
	sender := string(n.p.Sender)
	if create != nil && g.version.PrivilegedRoomCreators() && isCreator(create, sender) {
		n.senderPower = creatorPowerLevel
		return n.senderPower
	}
	if pl == nil {
		if create != nil && !g.version.PrivilegedRoomCreators() {
			creator := string(create.p.Sender)
			if g.version.CreatorInContent() {
				creator = gjson.GetBytes(create.p.Content, "creator").Str
			}
			if creator == sender {
				n.senderPower = 100
			}
		}
		return n.senderPower
	}
	level := gjson.GetBytes(pl.p.Content, exgjson.Path("users", sender))
	if !level.Exists() {
		level = gjson.GetBytes(pl.p.Content, "users_default")
	}
	n.senderPower = intLevel(level)
	return n.senderPower
}

// isCreator reports whether user is a creator of a v12 room: the create event's sender
// or one of its additional_creators.
func isCreator(create *node, user string) bool {
	if string(create.p.Sender) == user {
		return true
	}
	for _, c := range gjson.GetBytes(create.p.Content, "additional_creators").Array() {
		if c.Type == gjson.String && c.Str == user {
			return true
		}
	}
	return false
}

// intLevel reads a power level as the auth rules of older room versions do (numbers,
// numeric strings, booleans); anything else is 0.
func intLevel(v gjson.Result) int64 {
	switch v.Type {
	case gjson.Number:
		return v.Int()
	case gjson.String:
		n, err := strconv.ParseInt(strings.TrimSpace(v.Str), 10, 64)
		if err == nil {
			return n
		}
	case gjson.True:
		return 1
	}
	return 0
}

// powerLevelsOf is the power levels event among n's auth events, if any.
func powerLevelsOf(n *node) *node {
	for _, a := range n.auth {
		if k, _ := a.key(); k == (StateKey{Type: "m.room.power_levels"}) {
			return a
		}
	}
	return nil
}
