package stateres

import (
	"cmp"
	"container/heap"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"
)

// resolveV2 is state resolution v2 (room versions 2–11) and, with v21, v2.1 (room
// version 12): the iterative auth checks start from the empty state and the full
// conflicted set also holds the conflicted state subgraph.
func (g *graph) resolveV2(sets []StateMap, v21 bool) (StateMap, error) {
	unconflicted, conflictedIDs := separateV2(sets)
	if len(conflictedIDs) == 0 {
		return unconflicted, nil
	}
	var ids []id.EventID
	seen := map[id.EventID]bool{}
	for _, s := range sets {
		for _, x := range s {
			if !seen[x] {
				seen[x] = true
				ids = append(ids, x)
			}
		}
	}
	stateNodes, err := g.stateNodes(ids)
	if err != nil {
		return nil, err
	}
	if err := g.loadAuthChains(stateNodes); err != nil {
		return nil, err
	}
	order := g.topo()
	conflicted := make([]bool, len(g.all))
	for _, x := range conflictedIDs {
		conflicted[g.byID[x].i] = true
	}
	full := g.fullConflictedSet(sets, conflicted, order, v21)

	// 1. The power events of the full conflicted set with their auth chains in it, in
	// reverse topological power ordering; 2. applied to the unconflicted state (v2) or
	// to nothing (v2.1).
	powerOrder, inPower := g.powerOrdering(full, order)
	state := StateMap{}
	if !v21 {
		state = clone(unconflicted)
	}
	g.iterativeAuthChecks(state, powerOrder)

	// 3. The rest in mainline order of the power levels resolved so far; 4. applied.
	var rest []*node
	for _, n := range order {
		if full[n.i] && !inPower[n.i] {
			rest = append(rest, n)
		}
	}
	g.iterativeAuthChecks(state, g.mainlineOrdering(rest, state))

	// 5. The unconflicted state has the last word.
	for k, v := range unconflicted {
		state[k] = v
	}
	return state, nil
}

// separateV2 splits the state sets into the unconflicted state map (keys with the same
// event in every set) and the conflicted state set (every other event, once).
func separateV2(sets []StateMap) (StateMap, []id.EventID) {
	unconflicted := StateMap{}
	var conflicted []id.EventID
	inConflicted := map[id.EventID]bool{}
	for i, s := range sets {
		for k, v := range s {
			if seenBefore(sets[:i], k) {
				continue
			}
			same := true
			for _, o := range sets {
				if ov, ok := o[k]; !ok || ov != v {
					same = false
					break
				}
			}
			if same {
				unconflicted[k] = v
				continue
			}
			for _, o := range sets {
				if ov, ok := o[k]; ok && !inConflicted[ov] {
					inConflicted[ov] = true
					conflicted = append(conflicted, ov)
				}
			}
		}
	}
	slices.Sort(conflicted)
	return unconflicted, conflicted
}

func seenBefore(sets []StateMap, k StateKey) bool {
	for _, s := range sets {
		if _, ok := s[k]; ok {
			return true
		}
	}
	return false
}

// fullConflictedSet marks the conflicted events, the auth difference and, in v2.1, the
// conflicted state subgraph. order is the graph's topological order (auth events first).
//
// An event is in a state set's full auth chain when it is reachable from one of the
// set's events by auth_events links, the set's own events included: an event a set
// holds is one its side of the fork knows of (as Synapse computes it).
func (g *graph) fullConflictedSet(sets []StateMap, conflicted []bool, order []*node, v21 bool) []bool {
	words := (len(sets) + 63) / 64
	reach := make([]uint64, len(g.all)*words)
	for i, s := range sets {
		for _, x := range s {
			reach[g.byID[x].i*words+i/64] |= 1 << (i % 64)
		}
	}
	for j := len(order) - 1; j >= 0; j-- { // citing events before the events they cite
		n := order[j]
		from := reach[n.i*words : (n.i+1)*words]
		for _, a := range n.auth {
			to := reach[a.i*words : (a.i+1)*words]
			for w := range to {
				to[w] |= from[w]
			}
		}
	}
	full := slices.Clone(conflicted)
	for _, n := range g.all {
		m := reach[n.i*words : (n.i+1)*words]
		some, all := false, true
		for w, bits := range m {
			want := ^uint64(0)
			if w == words-1 && len(sets)%64 != 0 {
				want = 1<<(len(sets)%64) - 1
			}
			some = some || bits != 0
			all = all && bits == want
		}
		if some && !all {
			full[n.i] = true
		}
	}
	if v21 {
		// The conflicted state subgraph: events on an auth path between conflicted
		// events, that is reachable from one (down) and reaching one (up).
		down := slices.Clone(conflicted)
		for j := len(order) - 1; j >= 0; j-- {
			if n := order[j]; down[n.i] {
				for _, a := range n.auth {
					down[a.i] = true
				}
			}
		}
		up := slices.Clone(conflicted)
		for _, n := range order {
			for _, a := range n.auth {
				if up[a.i] {
					up[n.i] = true
					break
				}
			}
			if up[n.i] && down[n.i] {
				full[n.i] = true
			}
		}
	}
	return full
}

// isPowerEvent: power levels, join rules, and a member event with which someone removes
// another (leave or ban with the sender not the target).
func isPowerEvent(n *node) bool {
	k, ok := n.key()
	if !ok {
		return false
	}
	switch k {
	case StateKey{Type: "m.room.power_levels"}, StateKey{Type: "m.room.join_rules"}:
		return true
	}
	if k.Type != "m.room.member" || k.StateKey == string(n.p.Sender) {
		return false
	}
	m := gjson.GetBytes(n.p.Content, "membership").Str
	return m == "leave" || m == "ban"
}

// powerOrdering selects the power events of the full conflicted set with the events of
// their auth chains that are in it, and sorts them by the reverse topological power
// ordering: Kahn's algorithm over the auth graph, taking at each step the candidate whose
// sender has the greatest power, then the earliest origin_server_ts, then the smallest ID.
// Auth edges through events outside the selection still order the selected ones.
func (g *graph) powerOrdering(full []bool, order []*node) ([]*node, []bool) {
	// reached: every event in the auth chain of a conflicted power event (or one).
	reached := make([]bool, len(g.all))
	for _, n := range order {
		if full[n.i] && isPowerEvent(n) {
			reached[n.i] = true
		}
	}
	for j := len(order) - 1; j >= 0; j-- {
		if n := order[j]; reached[n.i] {
			for _, a := range n.auth {
				reached[a.i] = true
			}
		}
	}
	selected := make([]bool, len(g.all))
	waiting := make([]int, len(g.all)) // unsorted auth events
	citedBy := make([][]*node, len(g.all))
	var ready []*node // reached events outside the selection, passed through at once
	h := &powerHeap{g: g}
	count := 0
	for _, n := range order {
		if !reached[n.i] {
			continue
		}
		selected[n.i] = full[n.i]
		if selected[n.i] {
			count++
		}
		waiting[n.i] = len(n.auth)
		for _, a := range n.auth {
			citedBy[a.i] = append(citedBy[a.i], n)
		}
		if waiting[n.i] == 0 {
			if selected[n.i] {
				heap.Push(h, n)
			} else {
				ready = append(ready, n)
			}
		}
	}
	out := make([]*node, 0, count)
	release := func(n *node) {
		for _, c := range citedBy[n.i] {
			if waiting[c.i]--; waiting[c.i] == 0 {
				if selected[c.i] {
					heap.Push(h, c)
				} else {
					ready = append(ready, c)
				}
			}
		}
	}
	for {
		if len(ready) > 0 {
			n := ready[len(ready)-1]
			ready = ready[:len(ready)-1]
			release(n)
			continue
		}
		if h.Len() == 0 {
			break
		}
		n := heap.Pop(h).(*node)
		out = append(out, n)
		release(n)
	}
	if len(out) < count { // a cycle in the auth graph (only possible with non-hash IDs)
		var left []*node
		for _, n := range order {
			if selected[n.i] && !slices.Contains(out, n) {
				left = append(left, n)
			}
		}
		slices.SortFunc(left, g.comparePower)
		out = append(out, left...)
	}
	return out, selected
}

func (g *graph) comparePower(a, b *node) int {
	if c := cmp.Compare(g.power(b), g.power(a)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.p.OriginServerTS, b.p.OriginServerTS); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

type powerHeap struct {
	g     *graph
	nodes []*node
}

func (h *powerHeap) Len() int           { return len(h.nodes) }
func (h *powerHeap) Less(i, j int) bool { return h.g.comparePower(h.nodes[i], h.nodes[j]) < 0 }
func (h *powerHeap) Swap(i, j int)      { h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i] }
func (h *powerHeap) Push(x any)         { h.nodes = append(h.nodes, x.(*node)) }
func (h *powerHeap) Pop() any {
	n := h.nodes[len(h.nodes)-1]
	h.nodes = h.nodes[:len(h.nodes)-1]
	return n
}

// mainlineOrdering sorts events by the mainline of the power levels event of state:
// those whose power levels chain meets the mainline at an older event first (those that
// never meet it before all), then by origin_server_ts, then by ID.
func (g *graph) mainlineOrdering(events []*node, state StateMap) []*node {
	if len(events) == 0 {
		return nil
	}
	position := map[*node]int{}
	const never = int(^uint(0) >> 1)
	if pl := g.byID[state[StateKey{Type: "m.room.power_levels"}]]; pl != nil {
		for i, p := 0, pl; p != nil; i, p = i+1, powerLevelsOf(p) {
			if _, loop := position[p]; loop {
				break
			}
			position[p] = i
		}
	}
	// positionOf walks e's chain of power levels events to the mainline, remembering
	// the answer for every power levels event on the way.
	known := map[*node]int{}
	positionOf := func(e *node) int {
		var path []*node
		pos := never
		for p := powerLevelsOf(e); p != nil; p = powerLevelsOf(p) {
			if i, ok := position[p]; ok {
				pos = i
				break
			}
			if i, ok := known[p]; ok {
				pos = i
				break
			}
			if slices.Contains(path, p) {
				break
			}
			path = append(path, p)
		}
		for _, p := range path {
			known[p] = pos
		}
		return pos
	}
	type entry struct {
		n   *node
		pos int
	}
	list := make([]entry, len(events))
	for i, e := range events {
		list[i] = entry{e, positionOf(e)}
	}
	slices.SortFunc(list, func(a, b entry) int {
		if c := cmp.Compare(b.pos, a.pos); c != 0 {
			return c
		}
		if c := cmp.Compare(a.n.p.OriginServerTS, b.n.p.OriginServerTS); c != 0 {
			return c
		}
		return cmp.Compare(a.n.id, b.n.id)
	})
	out := make([]*node, len(list))
	for i, e := range list {
		out[i] = e.n
	}
	return out
}

// iterativeAuthChecks applies the events in order to state, each that the auth rules
// allow against the state so far (keys it lacks taken from the event's own auth events
// that were not rejected). Events rejected before are not admitted again, as in Synapse.
func (g *graph) iterativeAuthChecks(state StateMap, events []*node) {
	for _, n := range events {
		k, ok := n.key()
		if !ok || n.rejected() {
			continue
		}
		if g.allowed(n, state, true) {
			state[k] = n.id
		}
	}
}
