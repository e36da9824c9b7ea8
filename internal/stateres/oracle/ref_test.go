package oracle

import (
	"cmp"
	"encoding/json/v2"
	"slices"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/stateres"
)

// A second, deliberately plain transcription of the spec's state resolution v2 (sets
// of IDs, recursion, quadratic sorts; nothing shared with internal/stateres but the auth
// rules), with switches that reproduce where gomatrixserverlib departs from the spec, so
// that every disagreement with it can be named.

// quirks are gomatrixserverlib's departures from the spec (at the pinned version).
type quirks struct {
	// selfExcluded: a state set's full auth chain leaves out the set's own events (the
	// spec's wording; Synapse and we include them), and events of the unconflicted state
	// map never enter the full conflicted set.
	selfExcluded bool
	// narrowPowerSet: a power event pulls in only the conflicted events it reaches
	// through conflicted events, not all of its auth chain in the full conflicted set.
	narrowPowerSet bool
	// reverseKahn: Kahn's algorithm runs from the latest events, taking the greatest, and
	// follows direct auth edges only; it is not always the lexicographically smallest
	// ordering.
	reverseKahn bool
	// noCreatorPower: a sender without power levels in its auth events has power 0, even
	// the room's creator (Synapse: 100).
	noCreatorPower bool
	// selfAsAuthEvent: when the partial state lacks a key the auth rules need, the event
	// itself is taken in place of its own auth event of that key.
	selfAsAuthEvent bool
	// mainlineSteps: events that never reach the mainline share the oldest mainline
	// event's position, and ties are broken by the number of power levels events walked.
	mainlineSteps bool
	// leaveAfterLeave: its auth rules allow a leave of someone who has left (marked
	// "NOTSPEC" there, for Synapse's sake).
	leaveAfterLeave bool
}

var gmslQuirks = quirks{true, true, true, true, true, true, true}

type ref struct {
	version id.RoomVersion
	pdus    map[id.EventID]*pdu.PDU
	q       quirks
	chains  map[id.EventID]map[id.EventID]bool
	// listed: how many times gomatrixserverlib lists each power event (narrowPowerSet).
	listed map[id.EventID]int
}

func sortedKeys(m map[id.EventID]bool) []id.EventID {
	var out []id.EventID
	for x := range m {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}

func (r *ref) ev(x id.EventID) *pdu.PDU { return r.pdus[x] }

func keyOf(p *pdu.PDU) stateres.StateKey {
	return stateres.StateKey{Type: p.Type, StateKey: *p.StateKey}
}

// authEvents are an event's auth events and, in v12, its room's create event.
func (r *ref) authEvents(x id.EventID) []id.EventID {
	p := r.ev(x)
	if !r.version.RoomIDIsCreateEventID() || p.Type == "m.room.create" {
		return p.AuthEvents
	}
	return append(slices.Clip(p.AuthEvents), id.EventID("$"+string(p.RoomID)[1:]))
}

// chain is an event's auth chain (without the event).
func (r *ref) chain(x id.EventID) map[id.EventID]bool {
	if c, ok := r.chains[x]; ok {
		return c
	}
	c := map[id.EventID]bool{}
	for _, a := range r.authEvents(x) {
		if r.ev(a) == nil {
			continue
		}
		c[a] = true
		for b := range r.chain(a) {
			c[b] = true
		}
	}
	r.chains[x] = c
	return c
}

func (r *ref) isPower(x id.EventID) bool {
	p := r.ev(x)
	switch keyOf(p) {
	case stateres.StateKey{Type: "m.room.power_levels"}, stateres.StateKey{Type: "m.room.join_rules"}:
		return true
	}
	if p.Type != "m.room.member" || *p.StateKey == string(p.Sender) {
		return false
	}
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(p.Content, &c)
	return c.Membership == "leave" || c.Membership == "ban"
}

func (r *ref) resolve(sets []stateres.StateMap) stateres.StateMap {
	r.chains = map[id.EventID]map[id.EventID]bool{}
	unconflicted := stateres.StateMap{}
	conflicted := map[id.EventID]bool{}
	keys := map[stateres.StateKey]bool{}
	for _, s := range sets {
		for k := range s {
			keys[k] = true
		}
	}
	for k := range keys {
		v, same := sets[0][k], true
		for _, s := range sets {
			if w, ok := s[k]; !ok || w != v {
				same = false
			}
		}
		if same {
			unconflicted[k] = v
			continue
		}
		for _, s := range sets {
			if w, ok := s[k]; ok {
				conflicted[w] = true
			}
		}
	}
	if len(conflicted) == 0 {
		return unconflicted
	}
	// The auth difference: in some full auth chain but not all.
	count := map[id.EventID]int{}
	for _, s := range sets {
		full := map[id.EventID]bool{}
		for _, x := range s {
			if !r.q.selfExcluded {
				full[x] = true
			}
			for a := range r.chain(x) {
				full[a] = true
			}
		}
		for a := range full {
			count[a]++
		}
	}
	fullSet := map[id.EventID]bool{}
	for x := range conflicted {
		fullSet[x] = true
	}
	for x, n := range count {
		if n < len(sets) {
			fullSet[x] = true
		}
	}
	if r.q.selfExcluded {
		for _, x := range unconflicted {
			delete(fullSet, x)
		}
	}
	v21 := r.version.StateResVersion() == id.StateResV2_1
	if v21 {
		// The conflicted state subgraph: events reachable from a conflicted event that
		// reach one (both ends included).
		for x := range r.pdus {
			from, to := conflicted[x], conflicted[x]
			for c := range conflicted {
				from = from || r.chain(c)[x]
				to = to || r.chain(x)[c]
			}
			if from && to {
				fullSet[x] = true
			}
		}
	}
	// Step 1: the power events and their auth chains in the full conflicted set.
	power := map[id.EventID]bool{}
	// gomatrixserverlib's list of power events has an entry per occurrence in its full
	// conflicted set (the conflicted events, then the auth difference: an event can be in
	// both) and one per pull by another's walk, whose memory (visited) all walks share.
	r.listed = map[id.EventID]int{}
	visited, pulled := map[id.EventID]bool{}, map[id.EventID]bool{}
	var walk func(id.EventID)
	walk = func(y id.EventID) {
		for _, a := range r.ev(y).AuthEvents {
			if visited[a] {
				continue
			}
			if conflicted[a] {
				pulled[a] = true
				walk(a)
			}
			visited[a] = true
		}
	}
	for _, x := range sortedKeys(fullSet) {
		if !r.isPower(x) {
			continue
		}
		power[x] = true
		if r.q.narrowPowerSet {
			if conflicted[x] {
				r.listed[x]++
			}
			if n := count[x]; n > 0 && n < len(sets) {
				r.listed[x]++
			}
			walk(x)
			continue
		}
		for a := range r.chain(x) {
			if fullSet[a] {
				power[a] = true
			}
		}
	}
	for a := range pulled {
		r.listed[a]++
		power[a] = true
	}
	state := stateres.StateMap{}
	if !v21 {
		for k, v := range unconflicted {
			state[k] = v
		}
	}
	r.authChecks(state, r.powerOrder(power))
	// Steps 3 and 4: the rest by the mainline.
	var rest []id.EventID
	for x := range fullSet {
		if !power[x] {
			rest = append(rest, x)
		}
	}
	r.authChecks(state, r.mainlineOrder(rest, state[stateres.StateKey{Type: "m.room.power_levels"}]))
	for k, v := range unconflicted {
		state[k] = v
	}
	return state
}

// senderPower is the sender's level by the event's own auth events.
func (r *ref) senderPower(x id.EventID) int64 {
	p := r.ev(x)
	if r.version.PrivilegedRoomCreators() {
		create := r.ev(id.EventID("$" + string(p.RoomID)[1:]))
		var c struct {
			Additional []string `json:"additional_creators"`
		}
		_ = json.Unmarshal(create.Content, &c)
		if create.Sender == p.Sender || slices.Contains(c.Additional, string(p.Sender)) {
			return 1 << 62
		}
	}
	for _, a := range p.AuthEvents {
		if ap := r.ev(a); ap != nil && keyOf(ap) == (stateres.StateKey{Type: "m.room.power_levels"}) {
			var c struct {
				Users        map[string]int64 `json:"users"`
				UsersDefault int64            `json:"users_default"`
			}
			_ = json.Unmarshal(ap.Content, &c)
			if l, ok := c.Users[string(p.Sender)]; ok {
				return l
			}
			return c.UsersDefault
		}
	}
	if r.q.noCreatorPower {
		return 0
	}
	for _, a := range p.AuthEvents {
		if ap := r.ev(a); ap != nil && ap.Type == "m.room.create" {
			creator := string(ap.Sender)
			if r.version.CreatorInContent() {
				var c struct {
					Creator string `json:"creator"`
				}
				_ = json.Unmarshal(ap.Content, &c)
				creator = c.Creator
			}
			if creator == string(p.Sender) {
				return 100
			}
		}
	}
	return 0
}

func (r *ref) less(a, b id.EventID) int {
	return cmp.Or(cmp.Compare(r.senderPower(b), r.senderPower(a)),
		cmp.Compare(r.ev(a).OriginServerTS, r.ev(b).OriginServerTS), cmp.Compare(a, b))
}

// powerOrder is the lexicographically smallest topological order of the events, auth
// events first (or gomatrixserverlib's reverse construction).
func (r *ref) powerOrder(set map[id.EventID]bool) []id.EventID {
	var out []id.EventID
	placed := map[id.EventID]bool{}
	if r.q.reverseKahn {
		// From the latest: among the events no unplaced event cites, take the greatest
		// and put it in front. Citations count once per listing, so the auth events of an
		// event listed twice are never freed: those left over go in front, in ascending
		// order (not a topological order then).
		cites := map[id.EventID]int{}
		for x := range set {
			n := max(1, r.listed[x])
			for _, a := range r.ev(x).AuthEvents {
				cites[a] += n
			}
		}
		ready := map[id.EventID]bool{}
		for x := range set {
			if cites[x] == 0 {
				ready[x] = true
			}
		}
		for len(ready) > 0 {
			var best id.EventID
			for x := range ready {
				if best == "" || r.less(x, best) > 0 {
					best = x
				}
			}
			delete(ready, best)
			placed[best] = true
			out = append([]id.EventID{best}, out...)
			for _, a := range r.ev(best).AuthEvents {
				if cites[a]--; cites[a] == 0 && set[a] && !placed[a] {
					ready[a] = true
				}
			}
		}
		var left []id.EventID
		for x := range set {
			if !placed[x] {
				left = append(left, x)
			}
		}
		slices.SortFunc(left, r.less)
		return append(left, out...)
	}
	for len(placed) < len(set) {
		var best id.EventID
		for x := range set {
			if placed[x] {
				continue
			}
			ready := true
			for a := range r.chain(x) {
				if set[a] && !placed[a] {
					ready = false
				}
			}
			if ready && (best == "" || r.less(x, best) < 0) {
				best = x
			}
		}
		placed[best] = true
		out = append(out, best)
	}
	return out
}

func (r *ref) plOf(x id.EventID) id.EventID {
	for _, a := range r.ev(x).AuthEvents {
		if ap := r.ev(a); ap != nil && keyOf(ap) == (stateres.StateKey{Type: "m.room.power_levels"}) {
			return a
		}
	}
	return ""
}

func (r *ref) mainlineOrder(events []id.EventID, pl id.EventID) []id.EventID {
	var mainline []id.EventID // resolved power levels first
	for p := pl; p != ""; p = r.plOf(p) {
		mainline = append(mainline, p)
	}
	type key struct {
		pos, steps int
	}
	keys := map[id.EventID]key{}
	for _, e := range events {
		pos, steps := len(mainline), 0 // the spec's ∞ is past every position
		for p := r.plOf(e); p != ""; p = r.plOf(p) {
			if i := slices.Index(mainline, p); i >= 0 {
				pos = i
				break
			}
			steps++
		}
		if r.q.mainlineSteps {
			// Positions counted from the oldest; never reaching it counts as the oldest.
			old := len(mainline) - 1 - pos
			if pos == len(mainline) {
				old = 0
			}
			keys[e] = key{old, steps}
		} else {
			keys[e] = key{-pos, 0}
		}
	}
	slices.SortFunc(events, func(a, b id.EventID) int {
		return cmp.Or(cmp.Compare(keys[a].pos, keys[b].pos), cmp.Compare(keys[a].steps, keys[b].steps),
			cmp.Compare(r.ev(a).OriginServerTS, r.ev(b).OriginServerTS), cmp.Compare(a, b))
	})
	return events
}

func (r *ref) authChecks(state stateres.StateMap, events []id.EventID) {
	for _, x := range events {
		p := r.ev(x)
		byKey := map[stateres.StateKey]*pdu.PDU{}
		for _, k := range p.AuthEventSelection(r.version) {
			if y, ok := state[k]; ok {
				byKey[k] = r.ev(y)
				continue
			}
			for _, a := range p.AuthEvents {
				if ap := r.ev(a); ap != nil && keyOf(ap) == k {
					if r.q.selfAsAuthEvent {
						byKey[keyOf(p)] = p
					} else {
						byKey[k] = ap
					}
				}
			}
		}
		authEvents := []*pdu.PDU{}
		for _, e := range byKey {
			authEvents = append(authEvents, e)
		}
		fetch := func(ids []id.EventID) ([]*pdu.PDU, error) {
			var out []*pdu.PDU
			for _, y := range ids {
				if e := r.ev(y); e != nil {
					out = append(out, e)
				}
			}
			return out, nil
		}
		if allowed(r.version, p, authEvents, fetch) || r.q.leaveAfterLeave && r.leavesAgain(p, byKey) {
			state[keyOf(p)] = x
		}
	}
}

// leavesAgain: p is a leave of its sender, who has left (or was never in the room).
func (r *ref) leavesAgain(p *pdu.PDU, authEvents map[stateres.StateKey]*pdu.PDU) bool {
	membership := func(e *pdu.PDU) string {
		var c struct {
			Membership string `json:"membership"`
		}
		if e != nil {
			_ = json.Unmarshal(e.Content, &c)
		}
		return c.Membership
	}
	if p.Type != "m.room.member" || *p.StateKey != string(p.Sender) || membership(p) != "leave" {
		return false
	}
	old := membership(authEvents[stateres.StateKey{Type: "m.room.member", StateKey: string(p.Sender)}])
	return old == "" || old == "leave"
}
