package stateres

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"slices"

	"maunium.net/go/mautrix/id"
)

// resolveV1 is the original state resolution (room version 1). Starting from the
// unconflicted state R, conflicts are resolved by kind: power levels, then join rules,
// then memberships (each key against R as it stood before the memberships), each by
// walking its events from the lowest depth and keeping the last one the auth rules allow
// on top of its predecessor; then every other key takes its deepest event that R allows.
func (g *graph) resolveV1(sets []StateMap) (StateMap, error) {
	r, conflictedIDs := separateV1(sets)
	conflicted := map[StateKey][]*node{}
	var ids []id.EventID
	for _, list := range conflictedIDs {
		ids = append(ids, list...)
	}
	if err := g.load(ids); err != nil {
		return nil, err
	}
	// The events that authorize the conflicted ones are taken from R.
	var authIDs []id.EventID
	for k, list := range conflictedIDs {
		var evs []*node
		for _, x := range list {
			if n := g.byID[x]; n != nil {
				evs = append(evs, n)
				for _, ak := range n.p.AuthEventSelection(g.version) {
					if v, ok := r[ak]; ok {
						authIDs = append(authIDs, v)
					}
				}
			}
		}
		switch len(evs) { // events that cannot be had take no part
		case 0:
		case 1:
			r[k] = evs[0].id
		default:
			conflicted[k] = evs
		}
	}
	if err := g.load(authIDs); err != nil {
		return nil, err
	}
	byKind := func(match func(StateKey) bool) []StateKey {
		var keys []StateKey
		for k := range conflicted {
			if match(k) {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b StateKey) int {
			return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.StateKey, b.StateKey))
		})
		return keys
	}
	isPL := func(k StateKey) bool { return k == StateKey{Type: "m.room.power_levels"} }
	isJR := func(k StateKey) bool { return k.Type == "m.room.join_rules" }
	isMember := func(k StateKey) bool { return k.Type == "m.room.member" }
	for _, pass := range []func(StateKey) bool{isPL, isJR, isMember} {
		won := map[StateKey]id.EventID{}
		for _, k := range byKind(pass) {
			won[k] = g.resolveAuthBlockV1(conflicted[k], r)
		}
		for k, v := range won {
			r[k] = v
			delete(conflicted, k)
		}
	}
	won := map[StateKey]id.EventID{}
	for k, evs := range conflicted {
		won[k] = g.resolveNormalBlockV1(evs, r)
	}
	for k, v := range won {
		r[k] = v
	}
	return r, nil
}

// separateV1 splits the state sets into unconflicted state (a key's event where every set
// that has the key agrees) and the conflicting events of the other keys.
func separateV1(sets []StateMap) (StateMap, map[StateKey][]id.EventID) {
	unconflicted := StateMap{}
	conflicted := map[StateKey][]id.EventID{}
	for _, s := range sets {
		for k, v := range s {
			if list, ok := conflicted[k]; ok {
				if !slices.Contains(list, v) {
					conflicted[k] = append(list, v)
				}
				continue
			}
			if u, ok := unconflicted[k]; ok && u != v {
				conflicted[k] = []id.EventID{u, v}
				delete(unconflicted, k)
				continue
			}
			unconflicted[k] = v
		}
	}
	return unconflicted, conflicted
}

// orderV1 sorts events by descending depth, then ascending SHA-1 of their IDs.
func orderV1(evs []*node) []*node {
	type entry struct {
		n    *node
		hash [sha1.Size]byte
	}
	list := make([]entry, len(evs))
	for i, n := range evs {
		list[i] = entry{n, sha1.Sum([]byte(n.id))}
	}
	slices.SortFunc(list, func(a, b entry) int {
		if c := cmp.Compare(b.n.p.Depth, a.n.p.Depth); c != 0 {
			return c
		}
		return bytes.Compare(a.hash[:], b.hash[:])
	})
	out := make([]*node, len(list))
	for i, e := range list {
		out[i] = e.n
	}
	return out
}

// resolveAuthBlockV1 walks a key's events from the lowest depth (highest hash first),
// each checked against r with its predecessor in place, and keeps the last allowed before
// the first refusal.
func (g *graph) resolveAuthBlockV1(evs []*node, r StateMap) id.EventID {
	list := orderV1(evs)
	slices.Reverse(list)
	prev := list[0]
	for _, n := range list[1:] {
		k, _ := prev.key()
		old, had := r[k]
		r[k] = prev.id
		ok := g.allowed(n, r, false)
		if had {
			r[k] = old
		} else {
			delete(r, k)
		}
		if !ok {
			return prev.id
		}
		prev = n
	}
	return prev.id
}

// resolveNormalBlockV1 keeps a key's deepest event (lowest hash first) that r allows, or
// the shallowest when none is.
func (g *graph) resolveNormalBlockV1(evs []*node, r StateMap) id.EventID {
	list := orderV1(evs)
	for _, n := range list {
		if g.allowed(n, r, false) {
			return n.id
		}
	}
	return list[len(list)-1].id
}
