package syncer

import (
	"context"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Reads for the web pages (internal/web), which show rooms to anonymous readers.

// RoomChangedSince reports whether anything happened in a room after pos, for caches of
// what a room looked like at pos (true when unsure). It also returns the position a cache
// entry made now would be valid at.
func (sy *Syncer) RoomChangedSince(ctx context.Context, roomID string, pos stream.Pos) (bool, stream.Pos) {
	now := sy.notifier.Current()
	room, err := sy.hub.Room(ctx, roomID)
	if err != nil {
		return true, now
	}
	return room.HasItemsAfter(pos, now), now
}

// RoomHeader returns the room's current state events of the given types (with empty state
// keys; those it has) as a JSON array, and its joined member count, for a reader who may read
// the room.
func (sy *Syncer) RoomHeader(ctx context.Context, sess *auth.Session, roomID string, types ...string) ([]byte, int, error) {
	keys := make([]storage.StateKeyOf, len(types))
	for i, t := range types {
		keys[i] = storage.StateKeyOf{Type: t}
	}
	a, err := sy.access(ctx, sess, roomID)
	if err != nil {
		return nil, 0, err
	}
	state, err := sy.stateFor(ctx, a, keys...)
	if err != nil {
		return nil, 0, mxerr.Internal(err)
	}
	v, err := sy.newViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, 0, err
	}
	joined, _ := a.room.MemberCounts()
	return sy.appendEvents(nil, v, state), joined, nil
}
