package server

import (
	"context"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/rooms"
	"porthole/internal/stateres"
	"porthole/internal/storage"
)

// stateResolver gives the rooms service internal/stateres as its state resolution.
// getKey is the signing-key source of the auth rules (as rooms.Config.GetKey).
func stateResolver(getKey pdu.GetKeyFunc) rooms.Resolver {
	return func(ctx context.Context, version id.RoomVersion, sets []rooms.StateMap, fetch func([]id.EventID) ([]*pdu.PDU, error)) (rooms.StateMap, error) {
		in := make([]stateres.StateMap, len(sets))
		for i, s := range sets {
			m := make(stateres.StateMap, len(s))
			for k, v := range s {
				m[stateres.StateKey{Type: k.Type, StateKey: k.StateKey}] = id.EventID(v)
			}
			in[i] = m
		}
		fetchCtx := func(ids []id.EventID) ([]*pdu.PDU, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return fetch(ids)
		}
		resolved, err := stateres.Resolve(version, in, fetchCtx, getKey)
		if err != nil {
			return nil, err
		}
		out := make(rooms.StateMap, len(resolved))
		for k, v := range resolved {
			out[storage.StateKeyOf{Type: k.Type, StateKey: k.StateKey}] = string(v)
		}
		return out, nil
	}
}
