package syncer

import (
	"context"
	"encoding/json/jsontext"
	"errors"
	"slices"
	"sort"
	"time"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// EventsRequest is a parsed GET /events.
type EventsRequest struct {
	RoomID  string      // "" for the deprecated stream of all joined rooms
	From    *stream.Pos // nil: from now
	Timeout time.Duration
	Limit   int
}

// scanCap bounds how many stored events one request examines when it reads storage.
const scanCap = 1000

// Events serves GET /events. With a room ID it is the peek stream of that room: for members
// and, while the room is world-readable, for anyone. It answers as soon as something
// visible is new after From, or when the timeout ends.
func (sy *Syncer) Events(ctx context.Context, sess *auth.Session, req EventsRequest) ([]byte, error) {
	if req.RoomID == "" {
		return sy.globalEvents(ctx, sess, req)
	}
	room, err := sy.hub.Room(ctx, req.RoomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, mxerr.Forbidden("Non-joined access not allowed")
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	joined := room.Membership(sess.UserID) == visibility.Join
	if !joined && !room.WorldReadable() {
		return nil, mxerr.Forbidden("Non-joined access not allowed")
	}
	from, err := sy.resolveFrom(ctx, req.From)
	if err != nil {
		return nil, err
	}
	key := stream.RoomKey(req.RoomID)
	listen := func() (stream.Listener, error) { return sy.notifier.Listen(key), nil }
	return sy.longPoll(ctx, sess, req.Timeout, listen, func(cur stream.Pos) ([]byte, bool, error) {
		// Fetch the room again on every round: an idle room may have been evicted and
		// loaded anew while this request waited.
		room, err := sy.hub.Room(ctx, req.RoomID)
		if err != nil {
			return nil, false, mxerr.Internal(err)
		}
		items, scanEnd, err := sy.roomItems(ctx, room, from, cur)
		if err != nil {
			return nil, false, err
		}
		v, err := sy.filteringViewer(ctx, sess, room, !joined)
		if err != nil {
			return nil, false, err
		}
		res, err := renderStream(v, items, from, scanEnd, req.Limit, func(evs []*clientevent.Encoded) (*aggregates, error) {
			return sy.aggregate(ctx, v, room, scanEnd, evs)
		})
		if err != nil {
			return nil, false, err
		}
		// A storage read that stopped early answers now, so the client continues.
		return res.body(from), res.visible || scanEnd < cur, nil
	})
}

// roomItems returns the room's items in (from, to] from its window or, for tokens older
// than the window, from storage. scanEnd < to means storage reading stopped early (the
// items reach scanEnd) and the caller should answer and let the client continue.
func (sy *Syncer) roomItems(ctx context.Context, room *live.Room, from, to stream.Pos) ([]live.Item, stream.Pos, error) {
	if from >= to {
		return nil, to, nil
	}
	if items, ok := room.Items(from, to); ok {
		return items, to, nil
	}
	evs, err := sy.store.RoomEvents(ctx, room.ID, from, to, true, scanCap)
	if err != nil {
		return nil, 0, mxerr.Internal(err)
	}
	scanEnd := to
	if len(evs) == scanCap {
		scanEnd = evs[len(evs)-1].Pos
	}
	items := make([]live.Item, 0, len(evs)+4)
	for i := range evs {
		items = append(items, live.EventItem(&evs[i]))
	}
	receipts, err := sy.store.Receipts(ctx, room.ID, from, scanEnd)
	if err != nil {
		return nil, 0, mxerr.Internal(err)
	}
	for _, r := range receipts {
		items = append(items, live.ReceiptItem(r))
	}
	if t, err := sy.store.TypingIn(ctx, room.ID); err == nil && t.Pos > from && t.Pos <= scanEnd {
		items = append(items, live.TypingItem(t))
	}
	ps, err := sy.store.PresenceFor(ctx, room.Joined(), from, scanEnd)
	if err != nil {
		return nil, 0, mxerr.Internal(err)
	}
	for _, p := range ps {
		items = append(items, live.PresenceItem(p))
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].Pos < items[j].Pos })
	return items, scanEnd, nil
}

// streamResult is a rendered /events answer.
type streamResult struct {
	chunk   []byte // JSON array elements, comma separated
	visible bool
	end     stream.Pos
}

func (r *streamResult) body(from stream.Pos) []byte {
	b := make([]byte, 0, len(r.chunk)+64)
	b = append(b, `{"chunk":[`...)
	b = append(b, r.chunk...)
	b = append(b, `],"start":"`...)
	b = from.AppendToken(b)
	b = append(b, `","end":"`...)
	b = r.end.AppendToken(b)
	return append(b, `"}`...)
}

// renderStream turns items in (from, to] into an /events chunk for v: visible room events
// (at most limit, with the aggregations aggregate gives them), then the latest presence of
// each user, the latest typing set, and the receipts. When limit cuts the events, end is
// the last returned event and later ephemeral items wait for the next call, so feeding end
// back never skips or repeats.
func renderStream(v *viewer, items []live.Item, from, to stream.Pos, limit int, aggregate func([]*clientevent.Encoded) (*aggregates, error)) (streamResult, error) {
	return renderItems(v, items, func(i int) (bool, string) { return v.sees(items[i].Event) }, from, to, limit, aggregate)
}

// renderItems is renderStream with the visibility decision for item i given by judge.
func renderItems(v *viewer, items []live.Item, judge func(i int) (bool, string), from, to stream.Pos, limit int,
	aggregate func([]*clientevent.Encoded) (*aggregates, error)) (streamResult, error) {
	res := streamResult{end: to}
	var events shownEvents
	for i, it := range items {
		if it.Kind != live.KindEvent || it.Pos > to {
			continue
		}
		ok, m := judge(i)
		if !ok {
			continue
		}
		if len(events) == limit {
			res.end = events[len(events)-1].ev.Pos
			break
		}
		events = append(events, shownEvent{it.Event, m})
	}
	var (
		typing      *live.Item
		receipts    []*live.Item
		presence    []*live.Item
		accountData []*live.Item
		anything    bool
	)
	for i := range items {
		it := &items[i]
		if it.Pos > res.end {
			break
		}
		anything = true
		switch it.Kind {
		case live.KindTyping:
			typing = it
		case live.KindReceipt:
			if !it.Private || it.UserID == v.reader.UserID {
				receipts = append(receipts, it)
			}
		case live.KindPresence:
			presence = slices.DeleteFunc(presence, func(p *live.Item) bool { return p.UserID == it.UserID })
			presence = append(presence, it)
		case live.KindAccountData:
			accountData = append(accountData, it)
		}
	}
	if !anything {
		res.end = from
		return res, nil
	}
	var ag *aggregates
	if len(events) > 0 {
		var err error
		if ag, err = aggregate(events.events()); err != nil {
			return res, err
		}
	}
	b := make([]byte, 0, 1024)
	n := 0
	sep := func() {
		if n > 0 {
			b = append(b, ',')
		}
		n++
	}
	for _, s := range events {
		sep()
		b = ag.appendEvent(b, v, s.ev, s.m)
	}
	for _, p := range presence {
		sep()
		b = live.AppendPresence(b, p.Presence, v.nowMS)
	}
	if typing != nil {
		sep()
		b = append(b, typing.EDU...)
	}
	for _, r := range receipts {
		sep()
		b = append(b, r.EDU...)
	}
	for _, a := range accountData {
		sep()
		b = append(b, a.EDU...)
	}
	res.chunk, res.visible = b, n > 0
	return res, nil
}

// globalEvents is the deprecated /events without room_id: everything in the rooms the
// user is joined to, their own leave from others and invites to new ones, for real users
// only.
func (sy *Syncer) globalEvents(ctx context.Context, sess *auth.Session, req EventsRequest) ([]byte, error) {
	from, err := sy.resolveFrom(ctx, req.From)
	if err != nil {
		return nil, err
	}
	listen := func() (stream.Listener, error) { return sy.listenUser(ctx, sess.UserID) }
	return sy.longPoll(ctx, sess, req.Timeout, listen, func(cur stream.Pos) ([]byte, bool, error) {
		items, err := sy.userItems(ctx, sess, from, cur)
		if err != nil {
			return nil, false, err
		}
		v, err := sy.filteringViewer(ctx, sess, nil, false)
		if err != nil {
			return nil, false, err
		}
		res, err := sy.renderMulti(ctx, v, items, from, cur, req.Limit)
		if err != nil {
			return nil, false, err
		}
		return res.body(from), res.visible, nil
	})
}

// roomedItem is an item with the viewer's membership history in its room.
type roomedItem struct {
	live.Item
	history []live.Change
	// upTo is the last position of the room the viewer may read (their leave, if they left).
	upTo stream.Pos
	// own marks the viewer's own invite, which reaches them whatever the room's history
	// visibility (as in Synapse, the caller's own membership events always do).
	own bool
}

// userItems collects the items of every room the user is or was in, in (from, to]; rooms
// the user left contribute only up to the leave.
func (sy *Syncer) userItems(ctx context.Context, sess *auth.Session, from, to stream.Pos) ([]roomedItem, error) {
	ms, err := sy.store.MembershipsOf(ctx, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var out []roomedItem
	var invites []string
	for _, m := range ms {
		upTo := to
		switch m.Membership {
		case visibility.Join:
		case visibility.Leave, visibility.Ban:
			if m.Pos <= from {
				continue
			}
			upTo = min(m.Pos, to)
		case visibility.Invite:
			if m.Pos > from && m.Pos <= to {
				invites = append(invites, m.EventID)
			}
			continue
		default:
			continue
		}
		room, err := sy.hub.Room(ctx, m.RoomID)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		items, scanEnd, err := sy.roomItems(ctx, room, from, upTo)
		if err != nil {
			return nil, err
		}
		hist, err := sy.hub.History(ctx, room, sess.UserID)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		for _, it := range items {
			if it.Pos <= scanEnd {
				out = append(out, roomedItem{Item: it, history: hist, upTo: upTo})
			}
		}
	}
	if len(invites) > 0 {
		evs, err := sy.store.EventsByIDs(ctx, invites)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		for i := range evs {
			out = append(out, roomedItem{Item: live.EventItem(&evs[i]), own: true})
		}
	}
	// The user's own account data (global, room data and tags) also flows here, as in
	// Synapse's non-peeking stream.
	ads, err := sy.store.AccountData(ctx, sess.UserID, from, to)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	for _, a := range ads {
		edu := appendAccountData(nil, a)
		if a.RoomID != "" {
			edu = append(edu[:len(edu)-1], `,"room_id":`...)
			edu, _ = jsontext.AppendQuote(edu, a.RoomID)
			edu = append(edu, '}')
		}
		out = append(out, roomedItem{Item: live.Item{Pos: a.Pos, Kind: live.KindAccountData, EDU: edu}})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pos < out[j].Pos })
	return out, nil
}

// renderMulti is renderStream over several rooms: visibility uses each item's room history.
func (sy *Syncer) renderMulti(ctx context.Context, v *viewer, items []roomedItem, from, to stream.Pos, limit int) (streamResult, error) {
	flat := make([]live.Item, len(items))
	histories := make([][]live.Change, len(items))
	for i, it := range items {
		flat[i], histories[i] = it.Item, it.history
	}
	judge := func(i int) (bool, string) {
		if items[i].own {
			return true, visibility.Invite
		}
		m := live.MembershipAt(histories[i], flat[i].Pos)
		if ev := flat[i].Event; ev.StateKey == nil && v.ignored != nil {
			if _, ok := v.ignored[ev.Sender]; ok {
				return false, m
			}
		}
		return visibility.CanSee(flat[i].Event.Visibility, m, false), m
	}
	// Aggregations are computed room by room, each with the reader's history there.
	roomHistory := make(map[string][]live.Change)
	roomUpTo := make(map[string]stream.Pos)
	for _, it := range items {
		if it.Kind == live.KindEvent && !it.own {
			roomHistory[it.Event.RoomID], roomUpTo[it.Event.RoomID] = it.history, it.upTo
		}
	}
	aggregate := func(evs []*clientevent.Encoded) (*aggregates, error) {
		byRoom := make(map[string][]*clientevent.Encoded)
		for _, e := range evs {
			if _, ok := roomHistory[e.RoomID]; ok {
				byRoom[e.RoomID] = append(byRoom[e.RoomID], e)
			}
		}
		all := &aggregates{}
		for roomID, roomEvs := range byRoom {
			room, err := sy.hub.Room(ctx, roomID)
			if err != nil {
				return nil, mxerr.Internal(err)
			}
			rv := *v
			rv.history = roomHistory[roomID]
			ag, err := sy.aggregate(ctx, &rv, room, roomUpTo[roomID], roomEvs)
			if err != nil {
				return nil, err
			}
			all.merge(ag)
		}
		return all, nil
	}
	return renderItems(v, flat, judge, from, to, limit, aggregate)
}
