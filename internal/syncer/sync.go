package syncer

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"slices"
	"time"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/filter"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// SyncRequest is a parsed GET /sync.
type SyncRequest struct {
	Since     *stream.Pos
	Timeout   time.Duration
	FullState bool
	Filter    *filter.Filter
}

type eventList struct {
	Events []jsontext.Value `json:"events"`
}

type timeline struct {
	Events    []jsontext.Value `json:"events"`
	Limited   bool             `json:"limited"`
	PrevBatch string           `json:"prev_batch,omitempty"`
}

type unreadCounts struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

type roomSummary struct {
	Heroes             []string `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int     `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int     `json:"m.invited_member_count,omitempty"`
}

type joinedRoom struct {
	Timeline            timeline     `json:"timeline"`
	State               eventList    `json:"state"`
	Ephemeral           eventList    `json:"ephemeral"`
	AccountData         eventList    `json:"account_data"`
	UnreadNotifications unreadCounts `json:"unread_notifications"`
	Summary             roomSummary  `json:"summary"`
}

type leftRoom struct {
	Timeline    timeline  `json:"timeline"`
	State       eventList `json:"state"`
	AccountData eventList `json:"account_data"`
}

type invitedRoom struct {
	InviteState eventList `json:"invite_state"`
}

type syncRooms struct {
	Join   map[string]*joinedRoom  `json:"join"`
	Invite map[string]*invitedRoom `json:"invite"`
	Leave  map[string]*leftRoom    `json:"leave"`
	Knock  map[string]any          `json:"knock"`
}

type syncResponse struct {
	NextBatch   string    `json:"next_batch"`
	Rooms       syncRooms `json:"rooms"`
	Presence    eventList `json:"presence"`
	AccountData eventList `json:"account_data"`
	ToDevice    eventList `json:"to_device"`
	DeviceLists struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	} `json:"device_lists"`
	OneTimeKeysCount map[string]int `json:"device_one_time_keys_count"`
}

func (r *syncResponse) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 &&
		len(r.Presence.Events) == 0 && len(r.AccountData.Events) == 0
}

// defaultTimelineLimit is the timeline size when the filter sets none.
const defaultTimelineLimit = 10

// Sync serves GET /sync: an initial snapshot without since; otherwise everything new
// since it, waiting up to the timeout for something to happen.
func (sy *Syncer) Sync(ctx context.Context, sess *auth.Session, req SyncRequest) ([]byte, error) {
	if req.Filter == nil {
		req.Filter = &filter.Filter{}
	}
	deadline := sy.now().Add(req.Timeout)
	key := stream.UserKey(sess.UserID)
	for {
		ch := sy.notifier.Listen(key)
		cur := sy.notifier.Current()
		resp, err := sy.buildSync(ctx, sess, req, cur)
		if err != nil {
			return nil, err
		}
		if req.Since == nil || req.Timeout == 0 || !resp.empty() || *req.Since > cur {
			return json.Marshal(resp)
		}
		woken, err := sy.wait(ctx, sess, ch, deadline)
		if err != nil {
			return nil, err
		}
		if !woken {
			return json.Marshal(resp)
		}
	}
}

// syncWindow is the range one /sync response covers.
type syncWindow struct {
	since   stream.Pos // 0 for an initial sync
	initial bool
	to      stream.Pos
}

func (sy *Syncer) buildSync(ctx context.Context, sess *auth.Session, req SyncRequest, cur stream.Pos) (*syncResponse, error) {
	w := syncWindow{to: cur, initial: req.Since == nil}
	if req.Since != nil {
		w.since = min(*req.Since, cur)
	}
	resp := &syncResponse{NextBatch: cur.Token(), OneTimeKeysCount: map[string]int{}}
	resp.Rooms = syncRooms{Join: map[string]*joinedRoom{}, Invite: map[string]*invitedRoom{}, Leave: map[string]*leftRoom{}, Knock: map[string]any{}}
	resp.Presence.Events = []jsontext.Value{}
	resp.AccountData.Events = []jsontext.Value{}
	resp.ToDevice.Events = []jsontext.Value{}
	resp.DeviceLists.Changed, resp.DeviceLists.Left = []string{}, []string{}

	ms, err := sy.store.MembershipsOf(ctx, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	accountData, err := sy.store.AccountData(ctx, sess.UserID, w.since, cur)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	f := req.Filter
	var coMembers []string
	for _, m := range ms {
		if !f.Room.AllowsRoom(m.RoomID) {
			continue
		}
		changed := m.Pos > w.since
		switch m.Membership {
		case visibility.Join:
			room, err := sy.hub.Room(ctx, m.RoomID)
			if err != nil {
				return nil, mxerr.Internal(err)
			}
			coMembers = append(coMembers, room.Joined()...)
			jr, err := sy.joinedRoom(ctx, sess, room, w, req.FullState || w.initial || changed, accountData, f)
			if err != nil {
				return nil, err
			}
			if jr != nil {
				resp.Rooms.Join[m.RoomID] = jr
			}
		case visibility.Invite:
			if w.initial || changed {
				ir, err := sy.invitedRoom(ctx, m)
				if err != nil {
					return nil, err
				}
				resp.Rooms.Invite[m.RoomID] = ir
			}
		case visibility.Leave, visibility.Ban:
			if m.Forgotten || !(changed && !w.initial || w.initial && f.Room.IncludeLeave) {
				continue
			}
			if m.Pos <= w.since && !w.initial {
				continue
			}
			if lr, err := sy.leftRoom(ctx, sess, m, w, f); err != nil {
				return nil, err
			} else if lr != nil {
				resp.Rooms.Leave[m.RoomID] = lr
			}
		}
	}
	for _, a := range accountData {
		if a.RoomID == "" && f.AccountData.Allows(a.Type, sess.UserID) {
			resp.AccountData.Events = append(resp.AccountData.Events, appendAccountData(nil, a))
		}
	}
	coMembers = append(coMembers, sess.UserID)
	slices.Sort(coMembers)
	coMembers = slices.Compact(coMembers)
	presence, err := sy.store.PresenceFor(ctx, coMembers, w.since, cur)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	now := sy.now().UnixMilli()
	for i := range presence {
		if f.Presence.Allows("m.presence", presence[i].UserID) {
			resp.Presence.Events = append(resp.Presence.Events, live.AppendPresence(nil, &presence[i], now))
		}
	}
	return resp, nil
}

// timelineOf collects the latest visible, filter-allowed events of a room in (since, upTo],
// newest last, at most limit; limited reports that more exist before them.
func (sy *Syncer) timelineOf(ctx context.Context, v *viewer, room *live.Room, since, upTo stream.Pos, tf *filter.RoomEventFilter, limit int) ([]*clientevent.Encoded, []string, bool, error) {
	var picked []*clientevent.Encoded
	var members []string
	consider := func(e *clientevent.Encoded) bool {
		if tf != nil && !tf.Allows(e.RoomID, e.Type, e.Sender, e.HasURL) {
			return true
		}
		ok, m := v.sees(e)
		if !ok {
			return true
		}
		if len(picked) == limit {
			return false
		}
		picked = append(picked, e)
		members = append(members, visibility.ClientMembership(m))
		return true
	}
	limited := false
	if items, ok := room.Items(since, upTo); ok {
		for i := len(items) - 1; i >= 0 && !limited; i-- {
			if items[i].Kind == live.KindEvent && !consider(items[i].Event) {
				limited = true
			}
		}
	} else {
		cursor := upTo
		for !limited {
			evs, err := sy.store.RoomEvents(ctx, room.ID, cursor, since, false, 100)
			if err != nil {
				return nil, nil, false, mxerr.Internal(err)
			}
			for i := range evs {
				cursor = evs[i].Pos - 1
				if !consider(clientevent.Encode(&evs[i])) {
					limited = true
					break
				}
			}
			if len(evs) < 100 {
				break
			}
		}
	}
	slices.Reverse(picked)
	slices.Reverse(members)
	return picked, members, limited, nil
}

func timelineLimit(f *filter.Filter) int {
	if l := f.Room.Timeline.Limit; l > 0 {
		return min(l, 1000)
	}
	return defaultTimelineLimit
}

// joinedRoom builds one joined room of a sync response, or nil when nothing changed.
func (sy *Syncer) joinedRoom(ctx context.Context, sess *auth.Session, room *live.Room, w syncWindow, fullState bool, accountData []storage.AccountData, f *filter.Filter) (*joinedRoom, error) {
	v := sy.newViewer(sess, room, false)
	since := w.since
	if fullState && !w.initial && room.Membership(sess.UserID) == visibility.Join {
		// A room joined since the last sync is sent whole.
		since = w.since
	}
	events, memberships, limited, err := sy.timelineOf(ctx, v, room, since, w.to, &f.Room.Timeline, timelineLimit(f))
	if err != nil {
		return nil, err
	}
	jr := &joinedRoom{}
	jr.Timeline.Events = make([]jsontext.Value, len(events))
	for i, e := range events {
		jr.Timeline.Events[i] = e.Append(nil, v.nowMS, memberships[i], v.reader)
	}
	jr.Timeline.Limited = limited
	start := w.to
	if len(events) > 0 {
		start = events[0].Pos - 1
	}
	jr.Timeline.PrevBatch = start.Token()

	var state []storage.Event
	switch {
	case fullState:
		state, err = sy.store.StateAt(ctx, room.ID, start)
	case limited:
		state, err = sy.store.StateChanges(ctx, room.ID, w.since, start)
	}
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	state = filterState(state, events, &f.Room.State, sess.UserID)
	jr.State.Events = make([]jsontext.Value, 0, len(state))
	for i := range state {
		enc := clientevent.Encode(&state[i])
		_, m := v.sees(enc)
		jr.State.Events = append(jr.State.Events, v.appendEvent(nil, enc, m))
	}

	jr.Ephemeral.Events = []jsontext.Value{}
	if f.Room.Ephemeral.Limit >= 0 {
		eph, err := sy.ephemeral(ctx, v, room, w)
		if err != nil {
			return nil, err
		}
		for _, e := range eph {
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, e)
		}
	}
	jr.AccountData.Events = []jsontext.Value{}
	for _, a := range accountData {
		if a.RoomID == room.ID && f.Room.AccountData.Allows(room.ID, a.Type, sess.UserID, false) {
			jr.AccountData.Events = append(jr.AccountData.Events, appendAccountData(nil, a))
		}
	}
	if !w.initial && !fullState && len(jr.Timeline.Events) == 0 && len(jr.State.Events) == 0 &&
		len(jr.Ephemeral.Events) == 0 && len(jr.AccountData.Events) == 0 {
		return nil, nil
	}
	if jr.UnreadNotifications, err = sy.unread(ctx, sess.UserID, room.ID); err != nil {
		return nil, err
	}
	if fullState || hasMemberChange(events) {
		joined, invited, err := sy.store.MemberCounts(ctx, room.ID)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		jr.Summary.JoinedMemberCount, jr.Summary.InvitedMemberCount = &joined, &invited
	}
	return jr, nil
}

func hasMemberChange(evs []*clientevent.Encoded) bool {
	for _, e := range evs {
		if e.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// filterState applies the state filter, drops state already in the timeline and, when
// lazy-loading members, keeps only the members who sent timeline events (and the user).
func filterState(state []storage.Event, timeline []*clientevent.Encoded, sf *filter.RoomEventFilter, userID string) []storage.Event {
	inTimeline := make(map[string]bool, len(timeline))
	senders := map[string]bool{userID: true}
	for _, e := range timeline {
		inTimeline[e.ID] = true
		senders[e.Sender] = true
	}
	return slices.DeleteFunc(state, func(e storage.Event) bool {
		if inTimeline[e.ID] || !sf.Allows(e.RoomID, e.Type, e.Sender, false) {
			return true
		}
		return sf.LazyLoadMembers && e.Type == "m.room.member" && !senders[*e.StateKey]
	})
}

// ephemeral returns the room's typing set (when it changed, or on an initial sync when
// someone types) and receipts in the window.
func (sy *Syncer) ephemeral(ctx context.Context, v *viewer, room *live.Room, w syncWindow) ([][]byte, error) {
	var out [][]byte
	items, ok := room.Items(w.since, w.to)
	if !ok || w.initial {
		t, err := sy.store.TypingIn(ctx, room.ID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.Internal(err)
		}
		if err == nil && t.Pos > w.since && t.Pos <= w.to && (!w.initial || len(t.UserIDs) > 0) {
			out = append(out, live.TypingItem(t).EDU)
		}
		rs, err := sy.store.Receipts(ctx, room.ID, w.since, w.to)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		for _, r := range rs {
			if r.Type != "m.read.private" || r.UserID == v.reader.UserID {
				out = append(out, live.ReceiptItem(r).EDU)
			}
		}
		return out, nil
	}
	var typing []byte
	for _, it := range items {
		switch it.Kind {
		case live.KindTyping:
			typing = it.EDU
		case live.KindReceipt:
			if !it.Private || it.UserID == v.reader.UserID {
				out = append(out, it.EDU)
			}
		}
	}
	if typing != nil {
		out = append([][]byte{typing}, out...)
	}
	return out, nil
}

// notifyingTypes are the event types counted as unread notifications.
var notifyingTypes = []string{"m.room.message", "m.room.encrypted"}

// unread counts messages from others after the user's read receipt (or their join).
// There are no push rules yet, so every such message counts and none highlights.
func (sy *Syncer) unread(ctx context.Context, userID, roomID string) (unreadCounts, error) {
	var after stream.Pos
	if r, err := sy.store.UserReceipt(ctx, roomID, userID, "m.read"); err == nil {
		if e, err := sy.store.EventByID(ctx, r.EventID); err == nil {
			after = e.Pos
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return unreadCounts{}, mxerr.Internal(err)
	}
	if m, err := sy.store.Member(ctx, roomID, userID); err == nil && m.Pos > after {
		after = m.Pos
	}
	n, err := sy.store.CountEventsAfter(ctx, roomID, after, userID, notifyingTypes)
	if err != nil {
		return unreadCounts{}, mxerr.Internal(err)
	}
	return unreadCounts{NotificationCount: n}, nil
}

// strippedTypes are the state events shown with an invite.
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

func (sy *Syncer) invitedRoom(ctx context.Context, m storage.Member) (*invitedRoom, error) {
	keys := make([]storage.StateKeyOf, len(strippedTypes))
	for i, t := range strippedTypes {
		keys[i] = storage.StateKeyOf{Type: t}
	}
	state, err := sy.store.CurrentState(ctx, m.RoomID, keys...)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	invite, err := sy.store.EventByID(ctx, m.EventID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	ir := &invitedRoom{}
	for i := range state {
		ir.InviteState.Events = append(ir.InviteState.Events, clientevent.Stripped(&state[i]))
	}
	ir.InviteState.Events = append(ir.InviteState.Events, clientevent.Stripped(&invite))
	return ir, nil
}

// leftRoom is the room as of the user's leave: the events up to it.
func (sy *Syncer) leftRoom(ctx context.Context, sess *auth.Session, m storage.Member, w syncWindow, f *filter.Filter) (*leftRoom, error) {
	room, err := sy.hub.Room(ctx, m.RoomID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	v := sy.newViewer(sess, room, false)
	events, memberships, limited, err := sy.timelineOf(ctx, v, room, w.since, m.Pos, &f.Room.Timeline, timelineLimit(f))
	if err != nil {
		return nil, err
	}
	lr := &leftRoom{}
	lr.Timeline.Events = make([]jsontext.Value, len(events))
	for i, e := range events {
		lr.Timeline.Events[i] = e.Append(nil, v.nowMS, memberships[i], v.reader)
	}
	lr.Timeline.Limited = limited
	start := m.Pos
	if len(events) > 0 {
		start = events[0].Pos - 1
	}
	lr.Timeline.PrevBatch = start.Token()
	var state []storage.Event
	if w.initial {
		state, err = sy.store.StateAt(ctx, m.RoomID, start)
	} else if limited {
		state, err = sy.store.StateChanges(ctx, m.RoomID, w.since, start)
	}
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	state = filterState(state, events, &f.Room.State, sess.UserID)
	lr.State.Events = []jsontext.Value{}
	for i := range state {
		enc := clientevent.Encode(&state[i])
		_, mm := v.sees(enc)
		lr.State.Events = append(lr.State.Events, v.appendEvent(nil, enc, mm))
	}
	lr.AccountData.Events = []jsontext.Value{}
	return lr, nil
}
