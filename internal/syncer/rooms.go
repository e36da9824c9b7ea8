package syncer

import (
	"context"
	"errors"
	"slices"

	"github.com/tidwall/gjson"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/filter"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// MessagesRequest is a parsed GET /rooms/{roomId}/messages.
type MessagesRequest struct {
	RoomID   string
	From, To *stream.Pos
	Backward bool
	Limit    int
	Filter   *filter.RoomEventFilter
}

// hasURL reports whether an event's content has a string url (for contains_url filters).
func hasURL(e *storage.Event) bool {
	return gjson.GetBytes(e.PDU, "content.url").Type == gjson.String
}

// allowed applies a room event filter to a stored event.
func allowed(f *filter.RoomEventFilter, e *storage.Event) bool {
	return f == nil || f.Allows(e.RoomID, e.Type, e.Sender, hasURL(e))
}

// Messages pages through a room's history in either direction. Tokens are positions
// between events: going backwards from sN yields events at or before N; forwards, after N.
func (sy *Syncer) Messages(ctx context.Context, sess *auth.Session, req MessagesRequest) ([]byte, error) {
	a, err := sy.access(ctx, sess, req.RoomID)
	if err != nil {
		return nil, err
	}
	v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	var from stream.Pos
	switch {
	case req.From != nil:
		from = min(*req.From, a.upTo)
	case req.Backward:
		from = a.upTo
	}
	var bound stream.Pos // exclusive lower bound going back, inclusive upper going forward
	if req.To != nil {
		bound = *req.To
	} else if !req.Backward {
		bound = a.upTo
	}
	if !req.Backward {
		bound = min(bound, a.upTo)
	}

	var chunk shownEvents
	var senders []string
	cursor, exhausted := from, false
	if req.Limit > 0 {
		cursor, exhausted, err = sy.scanStored(ctx, req.RoomID, from, bound, !req.Backward, max(req.Limit*2, 20), scanCap, func(e *storage.Event) bool {
			if !allowed(req.Filter, e) {
				return true
			}
			enc := clientevent.Encode(e)
			ok, m := v.sees(enc)
			if !ok {
				return true
			}
			chunk = append(chunk, shownEvent{enc, m})
			if !slices.Contains(senders, e.Sender) {
				senders = append(senders, e.Sender)
			}
			return len(chunk) < req.Limit
		})
		if err != nil {
			return nil, err
		}
	}
	ag, err := sy.aggregate(ctx, v, a.room, a.upTo, chunk.events())
	if err != nil {
		return nil, err
	}
	b := []byte(`{"chunk":`)
	b = chunk.appendList(b, v, ag)
	b = append(b, `,"start":"`...)
	b = from.AppendToken(b)
	b = append(b, '"')
	if len(chunk) > 0 || !exhausted {
		b = append(b, `,"end":"`...)
		b = cursor.AppendToken(b)
		b = append(b, '"')
	}
	if req.Filter != nil && req.Filter.LazyLoadMembers && len(senders) > 0 {
		keys := make([]storage.StateKeyOf, len(senders))
		for i, s := range senders {
			keys[i] = storage.StateKeyOf{Type: "m.room.member", StateKey: s}
		}
		state, err := sy.store.StateAt(ctx, req.RoomID, a.upTo, keys...)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		b = append(b, `,"state":`...)
		b = sy.appendEvents(b, v, state)
	}
	return append(b, '}'), nil
}

// appendEvents writes stored events as a JSON array for v (state is not filtered by
// history visibility: a reader who may read the room may see its state).
func (sy *Syncer) appendEvents(b []byte, v *viewer, evs []storage.Event) []byte {
	b = append(b, '[')
	for i := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		enc := clientevent.Encode(&evs[i])
		_, m := v.sees(enc)
		b = v.appendEvent(b, enc, m)
	}
	return append(b, ']')
}

// Event returns one event the user may see (404 otherwise, so existence does not leak).
func (sy *Syncer) Event(ctx context.Context, sess *auth.Session, roomID, eventID string) ([]byte, error) {
	notFound := mxerr.NotFound("Event not found")
	a, err := sy.access(ctx, sess, roomID)
	if e, ok := mxerr.As(err); ok && e.Status == 403 {
		return nil, notFound
	} else if err != nil {
		return nil, err
	}
	e, err := sy.store.EventByID(ctx, eventID)
	// Events kept out of the timeline (outliers, soft-failed) are not shown to clients.
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomID != roomID || e.Pos > a.upTo || e.Outlier != "")) {
		return nil, notFound
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	enc := clientevent.Encode(&e)
	ok, m := v.sees(enc)
	if !ok {
		return nil, notFound
	}
	ag, err := sy.aggregate(ctx, v, a.room, a.upTo, []*clientevent.Encoded{enc})
	if err != nil {
		return nil, err
	}
	return ag.appendEvent(nil, v, enc, m), nil
}

// ContextRequest is a parsed GET /rooms/{roomId}/context/{eventId}.
type ContextRequest struct {
	RoomID, EventID string
	Limit           int
	Filter          *filter.RoomEventFilter
}

// Context returns an event with the visible events around it and the state at the last
// one returned.
func (sy *Syncer) Context(ctx context.Context, sess *auth.Session, req ContextRequest) ([]byte, error) {
	a, err := sy.access(ctx, sess, req.RoomID)
	if err != nil {
		return nil, err
	}
	e, err := sy.store.EventByID(ctx, req.EventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomID != req.RoomID || e.Pos > a.upTo || e.Outlier != "")) {
		return nil, mxerr.NotFound("Event not found")
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	enc := clientevent.Encode(&e)
	ok, m := v.sees(enc)
	if !ok {
		return nil, mxerr.NotFound("Event not found")
	}
	before := req.Limit / 2
	after := req.Limit - before
	senders := map[string]bool{e.Sender: true}
	collect := func(forward bool, want int) (shownEvents, stream.Pos, error) {
		var out shownEvents
		cursor, bound := e.Pos-1, stream.Pos(0)
		if forward {
			cursor, bound = e.Pos, a.upTo
		}
		if want == 0 {
			return nil, cursor, nil
		}
		cursor, _, err := sy.scanStored(ctx, req.RoomID, cursor, bound, forward, 50, scanCap, func(x *storage.Event) bool {
			if !allowed(req.Filter, x) {
				return true
			}
			xe := clientevent.Encode(x)
			if ok, m := v.sees(xe); ok {
				senders[x.Sender] = true
				out = append(out, shownEvent{xe, m})
			}
			return len(out) < want
		})
		return out, cursor, err
	}
	evBefore, start, err := collect(false, before)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	evAfter, end, err := collect(true, after)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	state, err := sy.store.StateAt(ctx, req.RoomID, max(end, e.Pos))
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if req.Filter != nil && req.Filter.LazyLoadMembers {
		state = keepMembers(state, senders)
	}
	all := append(append(shownEvents{{enc, m}}, evBefore...), evAfter...)
	ag, err := sy.aggregate(ctx, v, a.room, a.upTo, all.events())
	if err != nil {
		return nil, err
	}
	b := []byte(`{"event":`)
	b = ag.appendEvent(b, v, enc, m)
	b = append(b, `,"events_before":`...)
	b = evBefore.appendList(b, v, ag)
	b = append(b, `,"events_after":`...)
	b = evAfter.appendList(b, v, ag)
	b = append(b, `,"start":"`...)
	b = start.AppendToken(b)
	b = append(b, `","end":"`...)
	b = end.AppendToken(b)
	b = append(b, `","state":`...)
	b = sy.appendEvents(b, v, state)
	return append(b, '}'), nil
}

// stateFor returns the room state a reader may see: current state, or the state at their
// leave for users who left.
func (sy *Syncer) stateFor(ctx context.Context, a *roomAccess, keys ...storage.StateKeyOf) ([]storage.Event, error) {
	if a.departed {
		return sy.store.StateAt(ctx, a.room.ID, a.upTo, keys...)
	}
	return sy.store.CurrentState(ctx, a.room.ID, keys...)
}

// State returns the room's state events.
func (sy *Syncer) State(ctx context.Context, sess *auth.Session, roomID string) ([]byte, error) {
	a, err := sy.access(ctx, sess, roomID)
	if err != nil {
		return nil, err
	}
	state, err := sy.stateFor(ctx, a)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	v, err := sy.newViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	return sy.appendEvents(nil, v, state), nil
}

// StateEvent returns one state event's content, or the whole event when asEvent.
func (sy *Syncer) StateEvent(ctx context.Context, sess *auth.Session, roomID, evType, stateKey string, asEvent bool) ([]byte, error) {
	a, err := sy.access(ctx, sess, roomID)
	if err != nil {
		return nil, err
	}
	state, err := sy.stateFor(ctx, a, storage.StateKeyOf{Type: evType, StateKey: stateKey})
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if len(state) == 0 {
		return nil, mxerr.NotFound("Event not found")
	}
	if asEvent {
		v, err := sy.newViewer(ctx, sess, a.room, a.peeking)
		if err != nil {
			return nil, err
		}
		enc := clientevent.Encode(&state[0])
		_, m := v.sees(enc)
		return v.appendEvent(nil, enc, m), nil
	}
	return clientevent.Content(&state[0]), nil
}

// MembersRequest is a parsed GET /rooms/{roomId}/members.
type MembersRequest struct {
	RoomID        string
	At            *stream.Pos
	Membership    string
	NotMembership string
}

// Members returns the room's member events, at a position if asked.
func (sy *Syncer) Members(ctx context.Context, sess *auth.Session, req MembersRequest) ([]byte, error) {
	a, err := sy.access(ctx, sess, req.RoomID)
	if err != nil {
		return nil, err
	}
	var evs []storage.Event
	v, err := sy.newViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	if req.At != nil || a.departed {
		at := a.upTo
		if req.At != nil {
			at = min(*req.At, a.upTo)
			// The state at a token is history: the caller must have been able to see the
			// room's last event before it (as Synapse checks).
			last, err := sy.store.RoomEvents(ctx, req.RoomID, at, 0, false, 1)
			if err != nil {
				return nil, mxerr.Internal(err)
			}
			if len(last) == 0 {
				return nil, mxerr.NotFound("No event at or before the token")
			}
			if ok, _ := v.sees(clientevent.Encode(&last[0])); !ok {
				return nil, mxerr.Forbidden("You may not view the room's members at this token")
			}
		}
		state, err := sy.store.StateAt(ctx, req.RoomID, at)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		for _, e := range state {
			if e.Type == "m.room.member" {
				evs = append(evs, e)
			}
		}
	} else {
		members, err := sy.store.Members(ctx, req.RoomID)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		ids := make([]string, len(members))
		for i, m := range members {
			ids[i] = m.EventID
		}
		if evs, err = sy.store.EventsByIDs(ctx, ids); err != nil {
			return nil, mxerr.Internal(err)
		}
	}
	evs = slices.DeleteFunc(evs, func(e storage.Event) bool {
		return (req.Membership != "" && e.Membership != req.Membership) || (req.NotMembership != "" && e.Membership == req.NotMembership)
	})
	b := []byte(`{"chunk":`)
	b = sy.appendEvents(b, v, evs)
	return append(b, '}'), nil
}

// JoinedMember is an entry of /joined_members. A profile field the member has not set is
// null, as Synapse answers: matrix-nio requires display_name (see specschema's allowlist).
type JoinedMember struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
}

// JoinedMembers lists joined members with their profiles; only members may ask.
func (sy *Syncer) JoinedMembers(ctx context.Context, sess *auth.Session, roomID string) (map[string]JoinedMember, error) {
	a, err := sy.access(ctx, sess, roomID)
	if err != nil {
		return nil, err
	}
	if a.membership != "join" {
		return nil, mxerr.Forbidden("You are not in this room")
	}
	members, err := sy.store.Members(ctx, roomID, "join")
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.EventID
	}
	evs, err := sy.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	out := make(map[string]JoinedMember, len(evs))
	for i := range evs {
		c := gjson.ParseBytes(clientevent.Content(&evs[i]))
		var jm JoinedMember
		if dn := c.Get("displayname"); dn.Type == gjson.String {
			s := dn.Str
			jm.DisplayName = &s
		}
		if av := c.Get("avatar_url"); av.Type == gjson.String {
			s := av.Str
			jm.AvatarURL = &s
		}
		out[*evs[i].StateKey] = jm
	}
	return out, nil
}
