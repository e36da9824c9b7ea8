// Package stateres is state resolution: the room state after a fork of the event graph,
// computed from the states of the fork's branches by the algorithm of the room version
// (spec: the room-version pages, "State resolution"). v1 serves room versions 1, v2
// versions 2–11 and v2.1 version 12.
//
// It is pure: events come from a fetch function given by the caller, nothing is stored,
// and the same input always gives the same answer. The auth rules are mautrix's
// eventauth, called with the state resolved so far as the spec asks.
package stateres

import (
	"errors"
	"fmt"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// StateKey is a state entry's (type, state_key).
type StateKey = pdu.StateKey

// StateMap is a room state: event IDs by (type, state_key).
type StateMap = map[StateKey]id.EventID

// Fetch loads events by ID, in order, a nil entry for an event it does not have. Each
// event carries its ID in InternalMeta.EventID (needed for room versions 1 and 2, whose
// IDs are not hashes) and InternalMeta.Rejected when it was rejected.
type Fetch = func(ids []id.EventID) ([]*pdu.PDU, error)

// MaxEvents bounds the events one resolution may load (the state sets and their auth
// chains), so that a hostile graph cannot make it walk without end.
const MaxEvents = 1_000_000

// ErrUnknownEvent means an event of a state set could not be fetched.
var ErrUnknownEvent = errors.New("state event unknown")

// ErrCustomEventIDs means a room of version 1 or 2 was to be resolved while mautrix
// computes event IDs from hashes: the auth rules need the IDs such events carry, which
// mautrix uses only with pdu.UseInternalMetaForGetEventID set (at start-up, before any
// resolution runs).
var ErrCustomEventIDs = errors.New("room versions 1 and 2 need pdu.UseInternalMetaForGetEventID")

// Resolve returns the resolution of the state sets for a room of the given version.
// getKey finds servers' signing keys for the auth rules that check a signature (joins
// to restricted rooms); nil makes such checks fail.
func Resolve(version id.RoomVersion, sets []StateMap, fetch Fetch, getKey pdu.GetKeyFunc) (StateMap, error) {
	if !version.IsKnown() {
		return nil, fmt.Errorf("%w %q", id.ErrUnknownRoomVersion, version)
	}
	if version.EventIDFormat() == id.EventIDFormatCustom && !pdu.UseInternalMetaForGetEventID {
		return nil, ErrCustomEventIDs
	}
	switch len(sets) {
	case 0:
		return StateMap{}, nil
	case 1:
		return clone(sets[0]), nil
	}
	if getKey == nil {
		getKey = noKeys
	}
	g := newGraph(version, fetch, getKey)
	if version.StateResVersion() == id.StateResV1 {
		return g.resolveV1(sets)
	}
	return g.resolveV2(sets, version.StateResVersion() == id.StateResV2_1)
}

func clone(m StateMap) StateMap {
	out := make(StateMap, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
