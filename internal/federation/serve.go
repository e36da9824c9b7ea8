package federation

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"porthole/internal/mxerr"
	"porthole/internal/rooms"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// maxAuthChain bounds an auth chain walked for another server.
const maxAuthChain = 50000

// Event is a stored event as another server may have it (GET /event/{eventId}): origin
// must have a member joined to the event's room now and not be denied by its ACL; an event
// whose history visibility hides it from origin's users is answered redacted (as Synapse).
func (in *Inbound) Event(ctx context.Context, origin, eventID string) (json.RawMessage, error) {
	e, room, err := in.eventForServer(ctx, origin, "", eventID)
	if err != nil {
		return nil, err
	}
	visible, err := in.visibleTo(ctx, origin, &e)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if !visible {
		redacted, err := roomversion.Redact(id.RoomVersion(room.Version), e.PDU)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		return redacted, nil
	}
	return e.PDU, nil
}

// StateIDs is the state of a room before an event, as event IDs, with the auth chain of
// that state (GET /state_ids/{roomId}?event_id=).
func (in *Inbound) StateIDs(ctx context.Context, origin, roomID, eventID string) (state, authChain []string, err error) {
	e, room, err := in.eventForServer(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, nil, err
	}
	after, err := rooms.StateAfter(ctx, in.store, &e)
	if errors.Is(err, rooms.ErrMissingState) {
		return nil, nil, mxerr.NotFound("The state at this event is not known here")
	} else if err != nil {
		return nil, nil, mxerr.Internal(err)
	}
	// The state before the event: without it, or with what it replaced.
	if e.StateKey != nil {
		k := storage.StateKeyOf{Type: e.Type, StateKey: *e.StateKey}
		if after[k] == e.ID {
			if prev := gjson.GetBytes(e.Unsigned, "replaces_state").Str; prev != "" {
				after[k] = prev
			} else {
				delete(after, k)
			}
		}
	}
	for _, v := range after {
		state = append(state, v)
	}
	slices.Sort(state)
	chain, err := in.authChain(ctx, id.RoomVersion(room.Version), state)
	if err != nil {
		return nil, nil, mxerr.Internal(err)
	}
	for _, c := range chain {
		authChain = append(authChain, c.ID)
	}
	return state, authChain, nil
}

// EventAuth is the full auth chain of an event (GET /event_auth/{roomId}/{eventId}).
func (in *Inbound) EventAuth(ctx context.Context, origin, roomID, eventID string) ([]json.RawMessage, error) {
	e, room, err := in.eventForServer(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, err
	}
	chain, err := in.authChain(ctx, id.RoomVersion(room.Version), []string{e.ID})
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	out := make([]json.RawMessage, len(chain))
	for i := range chain {
		out[i] = chain[i].PDU
	}
	return out, nil
}

// eventForServer loads an event for origin: 404 when unknown (or, with roomID, in another
// room), 403 when origin has no member in its room or the room's ACL denies it.
func (in *Inbound) eventForServer(ctx context.Context, origin, roomID, eventID string) (storage.Event, storage.Room, error) {
	e, err := in.store.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && roomID != "" && e.RoomID != roomID) {
		return e, storage.Room{}, mxerr.NotFound("Unknown event")
	} else if err != nil {
		return e, storage.Room{}, mxerr.Internal(err)
	}
	in2, err := in.hostInRoom(ctx, e.RoomID, origin)
	if err != nil {
		return e, storage.Room{}, mxerr.Internal(err)
	}
	if !in2 {
		return e, storage.Room{}, mxerr.Forbidden("Your server has no member in this room")
	}
	if err := in.allowedByACL(ctx, e.RoomID, origin); err != nil {
		return e, storage.Room{}, err
	}
	room, err := in.store.Room(ctx, e.RoomID)
	if err != nil {
		return e, storage.Room{}, mxerr.Internal(err)
	}
	return e, room, nil
}

// hostInRoom reports whether a user of server is joined to the room now.
func (in *Inbound) hostInRoom(ctx context.Context, roomID, server string) (bool, error) {
	members, err := in.store.Members(ctx, roomID, visibility.Join)
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if id.UserID(m.UserID).Homeserver() == server {
			return true, nil
		}
	}
	return false, nil
}

// visibleTo applies the event's history visibility to the server's users: as Synapse,
// world_readable and shared events are visible to a server in the room, joined ones if
// one of its users was joined at the event, invited ones also if one was invited. Events
// without a place in the timeline (outliers) are visible.
func (in *Inbound) visibleTo(ctx context.Context, server string, e *storage.Event) (bool, error) {
	if e.Outlier != "" {
		return true, nil
	}
	vis := visibility.Normalize(e.Visibility)
	if vis == visibility.WorldReadable || vis == visibility.Shared {
		return true, nil
	}
	state, err := in.store.StateIDsAt(ctx, e.RoomID, e.Pos)
	if err != nil {
		return false, err
	}
	var ids []string
	for k, v := range state {
		if k.Type == "m.room.member" && id.UserID(k.StateKey).Homeserver() == server {
			ids = append(ids, v)
		}
	}
	evs, err := in.store.EventsByIDs(ctx, ids)
	if err != nil {
		return false, err
	}
	best := ""
	for _, m := range evs {
		best = visibility.MoreJoined(best, m.Membership)
	}
	return visibility.CanSee(vis, best, false), nil
}

// authChain walks auth_events from the events start, breadth first, and returns every
// stored event reached (a start event only if another one reaches it), sorted by ID.
func (in *Inbound) authChain(ctx context.Context, version id.RoomVersion, start []string) ([]storage.Event, error) {
	seen := map[string]bool{}
	var out []storage.Event
	frontier := slices.Clone(start)
	first := true
	for len(frontier) > 0 && len(out) < maxAuthChain {
		evs, err := in.store.EventsByIDs(ctx, frontier)
		if err != nil {
			return nil, err
		}
		frontier = nil
		for _, e := range evs {
			if !first {
				out = append(out, e)
			}
			p, err := roomversion.Parse(version, e.PDU)
			if err != nil {
				return nil, err
			}
			for _, a := range p.AuthEvents {
				if !seen[string(a)] {
					seen[string(a)] = true
					frontier = append(frontier, string(a))
				}
			}
		}
		first = false
	}
	slices.SortFunc(out, func(a, b storage.Event) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
