package syncer

import (
	"context"
	"math"
	"strconv"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/stream"
)

// maxTimestampScan bounds how many events one timestamp lookup examines for one the caller
// may see; past it the answer is 404 as if there were none.
const maxTimestampScan = 2000

// TimestampToEvent finds the event closest to ts (inclusive) in a direction, among those
// the caller may see (GET /rooms/{roomId}/timestamp_to_event): members and peekers of
// world-readable rooms, as Synapse's check_user_in_room_or_world_readable, with each
// event's history visibility applied on top.
func (sy *Syncer) TimestampToEvent(ctx context.Context, sess *auth.Session, roomID string, ts int64, forward bool) (string, int64, error) {
	a, err := sy.access(ctx, sess, roomID)
	if err != nil {
		return "", 0, err
	}
	v, err := sy.newViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return "", 0, err
	}
	at, cursor := ts, stream.Pos(-1)
	if !forward {
		cursor = math.MaxInt64
	}
	const batch = 200
	for scanned := 0; scanned < maxTimestampScan; {
		evs, err := sy.store.EventsByTime(ctx, roomID, at, cursor, forward, batch)
		if err != nil {
			return "", 0, mxerr.Internal(err)
		}
		scanned += len(evs)
		for i := range evs {
			e := &evs[i]
			at, cursor = e.OriginTS, e.Pos
			if e.Pos > a.upTo {
				continue
			}
			if ok, _ := v.sees(clientevent.Encode(e)); ok {
				return e.ID, e.OriginTS, nil
			}
		}
		if len(evs) < batch {
			break
		}
	}
	dir := "b"
	if forward {
		dir = "f"
	}
	return "", 0, mxerr.NotFound("Unable to find event from " + strconv.FormatInt(ts, 10) + " in direction " + dir)
}
