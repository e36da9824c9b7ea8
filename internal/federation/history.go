package federation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"

	"maunium.net/go/mautrix/id"

	"porthole/internal/mxerr"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
)

// Bounds of the history served to other servers (Synapse's).
const (
	DefaultMissingEvents = 10
	MaxMissingEvents     = 20
	MaxBackfill          = 100
	// maxHistoryIDs bounds the earliest/latest/v lists of one request.
	maxHistoryIDs = 50
)

// State is the state of a room before an event and its auth chain, as events (GET
// /state/{roomId}?event_id=): /state_ids with the events themselves.
func (in *Inbound) State(ctx context.Context, origin, roomID, eventID string) (state, authChain []json.RawMessage, err error) {
	stateIDs, chainIDs, err := in.StateIDs(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	load := func(ids []string) ([]json.RawMessage, error) {
		evs, err := in.store.EventsByIDs(ctx, ids)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		slices.SortFunc(evs, func(a, b storage.Event) int { return cmp.Compare(a.ID, b.ID) })
		out := make([]json.RawMessage, 0, len(evs))
		for _, e := range evs {
			out = append(out, e.PDU)
		}
		return out, nil
	}
	if state, err = load(stateIDs); err != nil {
		return nil, nil, err
	}
	if authChain, err = load(chainIDs); err != nil {
		return nil, nil, err
	}
	return state, authChain, nil
}

// MissingEvents walks prev_events back from latest, not past earliest nor below
// minDepth, and returns at most limit events (capped at 20), oldest first (POST
// /get_missing_events/{roomId}), as Synapse: breadth first, the latest events themselves
// left out, events origin may not see redacted.
func (in *Inbound) MissingEvents(ctx context.Context, origin, roomID string, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	if limit <= 0 {
		limit = DefaultMissingEvents
	}
	limit = min(limit, MaxMissingEvents)
	version, err := in.roomForServer(ctx, origin, roomID, earliest, latest)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range earliest {
		seen[e] = true
	}
	front, err := in.roomEvents(ctx, roomID, latest)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	for _, e := range front {
		seen[e.ID] = true
	}
	var out []storage.Event
	for len(front) > 0 && len(out) < limit {
		var next []string
		for _, e := range front {
			p, err := roomversion.Parse(version, e.PDU)
			if err != nil {
				return nil, mxerr.Internal(err)
			}
			for _, prev := range p.PrevEvents {
				if !seen[string(prev)] {
					seen[string(prev)] = true
					next = append(next, string(prev))
				}
			}
		}
		evs, err := in.roomEvents(ctx, roomID, next)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		front = front[:0]
		for _, e := range evs {
			if e.Depth < minDepth || len(out) >= limit {
				continue
			}
			out = append(out, e)
			front = append(front, e)
		}
	}
	slices.SortStableFunc(out, func(a, b storage.Event) int { return cmp.Compare(a.Depth, b.Depth) })
	return in.forServer(ctx, origin, version, out)
}

// Backfill is up to limit events (capped at 100) from the events v backwards, v
// included, deepest first (GET /backfill/{roomId}?v=&limit=), as Synapse: events origin
// may not see are redacted, as on /event.
func (in *Inbound) Backfill(ctx context.Context, origin, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	if limit <= 0 {
		return nil, mxerr.InvalidParam("limit must be a positive integer")
	}
	limit = min(limit, MaxBackfill)
	version, err := in.roomForServer(ctx, origin, roomID, from)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range from {
		seen[e] = true
	}
	// A frontier ordered by depth, deepest first: what Synapse's priority queue does.
	queue, err := in.roomEvents(ctx, roomID, from)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var out []storage.Event
	for len(queue) > 0 && len(out) < limit {
		slices.SortStableFunc(queue, func(a, b storage.Event) int { return cmp.Compare(b.Depth, a.Depth) })
		e := queue[0]
		queue = queue[1:]
		out = append(out, e)
		p, err := roomversion.Parse(version, e.PDU)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		var next []string
		for _, prev := range p.PrevEvents {
			if !seen[string(prev)] {
				seen[string(prev)] = true
				next = append(next, string(prev))
			}
		}
		evs, err := in.roomEvents(ctx, roomID, next)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		queue = append(queue, evs...)
	}
	return in.forServer(ctx, origin, version, out)
}

// roomForServer checks origin may read the room's history (a member joined now, not
// denied by the ACL) and the ID lists' sizes; it returns the room's version.
func (in *Inbound) roomForServer(ctx context.Context, origin, roomID string, lists ...[]string) (id.RoomVersion, error) {
	for _, l := range lists {
		if len(l) > maxHistoryIDs {
			return "", mxerr.InvalidParam("Too many event IDs")
		}
	}
	room, err := in.store.Room(ctx, roomID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", mxerr.NotFound("Unknown room")
		}
		return "", mxerr.Internal(err)
	}
	in2, err := in.hostInRoom(ctx, roomID, origin)
	if err != nil {
		return "", mxerr.Internal(err)
	}
	if !in2 {
		return "", mxerr.Forbidden("Your server has no member in this room")
	}
	if err := in.allowedByACL(ctx, roomID, origin); err != nil {
		return "", err
	}
	return id.RoomVersion(room.Version), nil
}

// roomEvents loads the events of ids that are stored, of the room and not rejected.
func (in *Inbound) roomEvents(ctx context.Context, roomID string, ids []string) ([]storage.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	evs, err := in.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(evs, func(e storage.Event) bool {
		return e.RoomID != roomID || e.Outlier == storage.OutlierRejected
	}), nil
}

// forServer is the events as origin may have them: redacted where their history
// visibility hides them from its users.
func (in *Inbound) forServer(ctx context.Context, origin string, version id.RoomVersion, evs []storage.Event) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(evs))
	for i := range evs {
		visible, err := in.visibleTo(ctx, origin, &evs[i])
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		pdu := json.RawMessage(evs[i].PDU)
		if !visible {
			if pdu, err = roomversion.Redact(version, evs[i].PDU); err != nil {
				return nil, mxerr.Internal(err)
			}
		}
		out = append(out, pdu)
	}
	return out, nil
}
