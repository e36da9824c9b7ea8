package syncer

import (
	"bytes"
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
	"porthole/internal/push"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// SyncRequest is a parsed GET /sync.
type SyncRequest struct {
	Since *stream.Pos
	// ToDeviceAck is the to-device position the since token acknowledges, when it names
	// one apart from Since (stream.SyncToken).
	ToDeviceAck *stream.Pos
	Timeout     time.Duration
	FullState   bool
	Filter      *filter.Filter
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
	// UnreadThreadNotifications is per thread root, when the filter asks for it.
	UnreadThreadNotifications map[string]unreadCounts `json:"unread_thread_notifications,omitempty"`
	Summary                   roomSummary             `json:"summary"`
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
	OneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`

	// at is the position the response was built at; toDevicePending says to-device
	// messages wait (finishE2EE reads them).
	at              stream.Pos
	toDevicePending bool
}

func (r *syncResponse) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 &&
		len(r.Presence.Events) == 0 && len(r.AccountData.Events) == 0 &&
		len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0 && !r.toDevicePending
}

// defaultTimelineLimit is the timeline size when the filter sets none.
const defaultTimelineLimit = 10

// Sync serves GET /sync: an initial snapshot without since; otherwise everything new
// since it, waiting up to the timeout for something to happen.
func (sy *Syncer) Sync(ctx context.Context, sess *auth.Session, req SyncRequest) ([]byte, error) {
	if req.Filter == nil {
		req.Filter = &filter.Filter{}
	}
	if req.Since != nil {
		since, err := sy.resolveFrom(ctx, req.Since)
		if err != nil {
			return nil, err
		}
		req.Since = &since
	}
	// The to-device messages the client acknowledges: those up to its token, or up to the
	// last one sent when the response that gave the token carried only part of the inbox.
	var ack stream.Pos
	if req.Since != nil {
		ack = *req.Since
		if req.ToDeviceAck != nil {
			ack = min(ack, *req.ToDeviceAck)
		}
	}
	req.ToDeviceAck = &ack
	listen := func() (stream.Listener, error) { return sy.listenUser(ctx, sess.UserID) }
	var last *syncResponse
	_, err := sy.longPoll(ctx, sess, req.Timeout, listen, func(cur stream.Pos) ([]byte, bool, error) {
		resp, err := sy.buildSync(ctx, sess, req, cur)
		if err != nil {
			return nil, false, err
		}
		last = resp
		// An initial sync answers at once.
		return nil, req.Since == nil || !resp.empty(), nil
	})
	if err != nil {
		return nil, err
	}
	if err := sy.finishE2EE(ctx, sess, last, ack); err != nil {
		return nil, err
	}
	return json.Marshal(last)
}

// listenUser registers a long-poll for anything concerning the user: their own key, and
// the rooms they are joined to.
func (sy *Syncer) listenUser(ctx context.Context, userID string) (stream.Listener, error) {
	ms, err := sy.hub.Memberships(ctx, userID)
	if err != nil {
		return stream.Listener{}, mxerr.Internal(err)
	}
	rooms := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Membership == visibility.Join {
			rooms = append(rooms, m.RoomID)
		}
	}
	return sy.notifier.ListenUser(userID, rooms), nil
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
	resp := &syncResponse{NextBatch: cur.Token(), OneTimeKeysCount: map[string]int{}, at: cur}
	resp.Rooms = syncRooms{Join: map[string]*joinedRoom{}, Invite: map[string]*invitedRoom{}, Leave: map[string]*leftRoom{}, Knock: map[string]any{}}
	resp.Presence.Events = []jsontext.Value{}
	resp.AccountData.Events = []jsontext.Value{}
	resp.ToDevice.Events = []jsontext.Value{}
	resp.DeviceLists.Changed, resp.DeviceLists.Left = []string{}, []string{}

	// Memberships and the account-data position come from memory: a woken long-poll
	// should not need the database to learn that nothing concerns it.
	ms, err := sy.hub.Memberships(ctx, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var accountData []storage.AccountData
	if adPos, err := sy.hub.AccountDataPos(ctx, sess.UserID); err != nil {
		return nil, mxerr.Internal(err)
	} else if adPos > w.since {
		if accountData, err = sy.store.AccountData(ctx, sess.UserID, w.since, cur); err != nil {
			return nil, mxerr.Internal(err)
		}
	}
	presence := newPresenceSet()
	if err := sy.syncRoomSections(ctx, sess, req, w, ms, accountData, presence, resp); err != nil {
		return nil, err
	}
	if err := sy.syncAccountData(sess, w, req.Filter, accountData, resp); err != nil {
		return nil, err
	}
	if err := sy.syncPresence(ctx, sess, w, req.Filter, presence, resp); err != nil {
		return nil, err
	}
	// Device lists are only for incremental syncs (the spec's rule; clients query keys
	// after an initial one).
	if !w.initial {
		changed, left, err := sy.deviceListUpdates(ctx, sess.UserID, ms, w.since, cur)
		if err != nil {
			return nil, err
		}
		if changed != nil {
			resp.DeviceLists.Changed = changed
		}
		if left != nil {
			resp.DeviceLists.Left = left
		}
	}
	if resp.toDevicePending, err = sy.toDevicePending(ctx, sess, *req.ToDeviceAck, cur); err != nil {
		return nil, err
	}
	return resp, nil
}

// syncRoomSections fills rooms.join, invite and leave, and collects the presence the
// joined rooms bring (presence.every: users whose whole presence is sent, the members of
// rooms the user newly joined and users who newly joined the user's rooms).
func (sy *Syncer) syncRoomSections(ctx context.Context, sess *auth.Session, req SyncRequest, w syncWindow, ms []storage.Member,
	accountData []storage.AccountData, presence *presenceSet, resp *syncResponse) error {
	f := req.Filter
	for _, m := range ms {
		if !f.Room.AllowsRoom(m.RoomID) {
			continue
		}
		changed := m.Pos > w.since
		switch m.Membership {
		case visibility.Join:
			room, err := sy.hub.Room(ctx, m.RoomID)
			if err != nil {
				return mxerr.Internal(err)
			}
			if err := sy.roomPresence(ctx, room, w, presence); err != nil {
				return err
			}
			jr, rv, err := sy.joinedRoom(ctx, sess, room, w, req.FullState, accountData, f)
			if err != nil {
				return err
			}
			if jr != nil {
				resp.Rooms.Join[m.RoomID] = jr
			}
			if w.initial {
				continue
			}
			if rv.newlyJoined {
				for _, u := range room.Joined() {
					presence.every[u] = true
				}
			}
			for _, e := range rv.events {
				if e.Type == "m.room.member" && e.Membership == visibility.Join && e.PrevMembership != visibility.Join {
					presence.every[*e.StateKey] = true
				}
			}
		case visibility.Invite:
			if w.initial || changed {
				ir, err := sy.invitedRoom(ctx, sess, m)
				if err != nil {
					return err
				}
				if ir != nil {
					resp.Rooms.Invite[m.RoomID] = ir
				}
			}
		case visibility.Leave, visibility.Ban:
			if m.Forgotten || !(changed && !w.initial || w.initial && f.Room.IncludeLeave) {
				continue
			}
			if m.Pos <= w.since && !w.initial {
				continue
			}
			if lr, err := sy.leftRoom(ctx, sess, m, w, f); err != nil {
				return err
			} else if lr != nil {
				resp.Rooms.Leave[m.RoomID] = lr
			}
		}
	}
	return nil
}

// syncAccountData fills the global account_data section.
func (sy *Syncer) syncAccountData(sess *auth.Session, w syncWindow, f *filter.Filter, accountData []storage.AccountData, resp *syncResponse) error {
	sawPushRules := false
	for _, a := range accountData {
		if a.RoomID != "" {
			continue
		}
		if a.Type == push.AccountDataType {
			sawPushRules = true
			// Stored rules are rebuilt on the current server defaults, as GET /pushrules does.
			var err error
			if a.Content, err = push.Encode(push.Load(a.Content, sess.UserID)); err != nil {
				return mxerr.Internal(err)
			}
		}
		if f.AccountData.Allows(a.Type, sess.UserID) {
			resp.AccountData.Events = append(resp.AccountData.Events, appendAccountData(nil, a))
		}
	}
	// An initial sync always carries the push rules, as Synapse's does; guests have none.
	if w.initial && !sawPushRules && !sess.IsGuest && f.AccountData.Allows(push.AccountDataType, sess.UserID) {
		content, err := push.Encode(push.Defaults(sess.UserID))
		if err != nil {
			return mxerr.Internal(err)
		}
		resp.AccountData.Events = append(resp.AccountData.Events,
			appendAccountData(nil, storage.AccountData{Type: push.AccountDataType, Content: content}))
	}
	return nil
}

// syncPresence fills the presence section: what the rooms brought, the user's own (when
// no room brought it), and the whole presence of the users in presence.every.
func (sy *Syncer) syncPresence(ctx context.Context, sess *auth.Session, w syncWindow, f *filter.Filter, presence *presenceSet, resp *syncResponse) error {
	if !presence.viaRooms {
		ps, err := sy.store.PresenceFor(ctx, []string{sess.UserID}, w.since, w.to)
		if err != nil {
			return mxerr.Internal(err)
		}
		for i := range ps {
			presence.add(&ps[i])
		}
	}
	if len(presence.every) > 0 {
		var extra []string
		for u := range presence.every {
			if u != sess.UserID {
				extra = append(extra, u)
			}
		}
		slices.Sort(extra)
		old, err := sy.store.PresenceFor(ctx, extra, -1, w.since)
		if err != nil {
			return mxerr.Internal(err)
		}
		for i := range old {
			presence.addIfAbsent(&old[i])
		}
		// Users who never set a presence are reported offline, as Synapse does.
		for _, u := range extra {
			presence.addIfAbsent(&storage.Presence{UserID: u, State: "offline"})
		}
	}
	now := sy.now().UnixMilli()
	for _, p := range presence.list() {
		if f.Presence.Allows("m.presence", p.UserID) {
			resp.Presence.Events = append(resp.Presence.Events, live.AppendPresence(nil, p, now))
		}
	}
	return nil
}

// presenceSet collects the latest presence per user for a sync response.
type presenceSet struct {
	byUser map[string]*storage.Presence
	// every are the users whose whole presence (not only changes) the response carries.
	every map[string]bool
	// viaRooms is set once a room's presence was read: the user's own presence is in it.
	viaRooms bool
}

func newPresenceSet() *presenceSet {
	return &presenceSet{byUser: map[string]*storage.Presence{}, every: map[string]bool{}}
}

func (s *presenceSet) add(p *storage.Presence) {
	if cur := s.byUser[p.UserID]; cur == nil || cur.Pos < p.Pos {
		s.byUser[p.UserID] = p
	}
}

func (s *presenceSet) addIfAbsent(p *storage.Presence) {
	if s.byUser[p.UserID] == nil {
		s.byUser[p.UserID] = p
	}
}

func (s *presenceSet) list() []*storage.Presence {
	out := make([]*storage.Presence, 0, len(s.byUser))
	for _, p := range s.byUser {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *storage.Presence) int { return int(a.Pos - b.Pos) })
	return out
}

// roomPresence adds the presence changes of a joined room's members in the window: from
// the room's in-memory items when they reach back to since, else from storage.
func (sy *Syncer) roomPresence(ctx context.Context, room *live.Room, w syncWindow, set *presenceSet) error {
	set.viaRooms = true
	if !w.initial {
		if items, ok := room.Items(w.since, w.to); ok {
			for _, it := range items {
				if it.Kind == live.KindPresence {
					set.add(it.Presence)
				}
			}
			return nil
		}
	}
	ps, err := sy.store.PresenceFor(ctx, room.Joined(), w.since, w.to)
	if err != nil {
		return mxerr.Internal(err)
	}
	for i := range ps {
		set.add(&ps[i])
	}
	return nil
}

// timelineOf collects the latest visible, filter-allowed events of a room in (since, upTo],
// newest last, at most limit; truncated reports that more exist before them. State events
// that are part of the current state are always included, so a client's view of the room
// ends up right even when it missed the period they were sent in.
func (sy *Syncer) timelineOf(ctx context.Context, v *viewer, room *live.Room, since, upTo stream.Pos, tf *filter.RoomEventFilter, limit int) ([]*clientevent.Encoded, []string, bool, error) {
	var picked []*clientevent.Encoded
	var members []string
	var err error
	consider := func(e *clientevent.Encoded) bool {
		if tf != nil && !tf.Allows(e.RoomID, e.Type, e.Sender, e.HasURL) {
			return true
		}
		ok, m := v.sees(e)
		if !ok && e.StateKey != nil {
			ok, err = sy.isCurrentState(ctx, e)
		}
		if !ok {
			return err == nil
		}
		if len(picked) == limit {
			return false
		}
		picked = append(picked, e)
		members = append(members, visibility.ClientMembership(m))
		return true
	}
	truncated := false
	if items, ok := room.Items(since, upTo); ok {
		for i := len(items) - 1; i >= 0 && !truncated && err == nil; i-- {
			if items[i].Kind == live.KindEvent && !consider(items[i].Event) {
				truncated = err == nil
			}
		}
	} else {
		// A timeline older than the window is read from storage, at most scanCap events:
		// past that it is limited, and the client pages back with prev_batch.
		stopped := false
		_, exhausted, qerr := sy.scanStored(ctx, room.ID, upTo, since, false, 100, scanCap, func(e *storage.Event) bool {
			stopped = !consider(clientevent.Encode(e))
			return !stopped
		})
		if qerr != nil {
			return nil, nil, false, qerr
		}
		truncated = err == nil && (stopped || !exhausted)
	}
	if err != nil {
		return nil, nil, false, mxerr.Internal(err)
	}
	slices.Reverse(picked)
	slices.Reverse(members)
	return picked, members, truncated, nil
}

// isCurrentState reports whether a state event is still the room's current one.
func (sy *Syncer) isCurrentState(ctx context.Context, e *clientevent.Encoded) (bool, error) {
	cur, err := sy.store.CurrentState(ctx, e.RoomID, storage.StateKeyOf{Type: e.Type, StateKey: *e.StateKey})
	if err != nil {
		return false, err
	}
	return len(cur) == 1 && cur[0].ID == e.ID, nil
}

func timelineLimit(f *filter.Filter) int {
	if l := f.Room.Timeline.Limit; l > 0 || f.Room.Timeline.LimitSet() {
		return min(l, 1000)
	}
	return defaultTimelineLimit
}

// roomView is one room's section of a sync response, before encoding.
type roomView struct {
	timeline    timeline
	state       []jsontext.Value
	events      []*clientevent.Encoded
	newlyJoined bool
}

// buildRoomView computes the timeline and state of a room between since and upTo. A room
// the user was not joined to at since (or any room in an initial sync) is sent whole:
// its timeline is the latest events of the room, marked limited when newly joined, and
// its state is the full state before the timeline.
func (sy *Syncer) buildRoomView(ctx context.Context, v *viewer, room *live.Room, w syncWindow, upTo stream.Pos, fullState bool, f *filter.Filter) (*roomView, error) {
	rv := &roomView{newlyJoined: !w.initial && live.MembershipAt(v.history, w.since) != visibility.Join}
	whole := w.initial || rv.newlyJoined
	since := w.since
	if whole {
		since = 0
	}
	events, memberships, truncated, err := sy.timelineOf(ctx, v, room, since, upTo, &f.Room.Timeline, timelineLimit(f))
	if err != nil {
		return nil, err
	}
	rv.events = events
	rv.timeline.Limited = truncated || rv.newlyJoined
	// As in Synapse, only a limited timeline carries aggregations: otherwise the client
	// has every child event itself. An incremental sync that is not limited (a woken
	// long-poll, typically) therefore computes none.
	var ag *aggregates
	if rv.timeline.Limited {
		if ag, err = sy.aggregate(ctx, v, room, upTo, events); err != nil {
			return nil, err
		}
	}
	rv.timeline.Events = make([]jsontext.Value, len(events))
	for i, e := range events {
		rv.timeline.Events[i] = ag.appendFiltered(v, f, e, memberships[i])
	}
	start := upTo
	if len(events) > 0 {
		start = events[0].Pos - 1
	}
	// As in Synapse, a whole-room timeline that holds every event still gets the
	// current position as prev_batch.
	prev := start
	if whole && !truncated {
		prev = upTo
	}
	rv.timeline.PrevBatch = prev.Token()

	sf := &f.Room.State
	var state []storage.Event
	switch {
	case fullState || whole:
		state, err = sy.store.StateAt(ctx, room.ID, start)
		if err == nil && sf.LazyLoadMembers {
			state = keepMembers(state, timelineSenders(events, v.reader.UserID))
		}
	case truncated:
		state, err = sy.store.StateChanges(ctx, room.ID, w.since, start)
	}
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if sf.LazyLoadMembers && !(fullState || whole) {
		extra, err := sy.lazyMembers(ctx, v, room, events, start, sf.IncludeRedundantMembers)
		if err != nil {
			return nil, err
		}
		state = append(state, extra...)
	}
	state = dropInTimeline(state, events, sf)
	if sf.LazyLoadMembers {
		sy.rememberMembers(v, room.ID, state)
	}
	rv.state = make([]jsontext.Value, 0, len(state))
	for i := range state {
		enc := clientevent.Encode(&state[i])
		_, m := v.sees(enc)
		rv.state = append(rv.state, f.ApplyEventFields(v.appendEvent(nil, enc, m)))
	}
	return rv, nil
}

// joinedRoom builds one joined room of a sync response, or nil when nothing changed.
func (sy *Syncer) joinedRoom(ctx context.Context, sess *auth.Session, room *live.Room, w syncWindow, fullState bool, accountData []storage.AccountData, f *filter.Filter) (*joinedRoom, *roomView, error) {
	v, err := sy.filteringViewer(ctx, sess, room, false)
	if err != nil {
		return nil, nil, err
	}
	rv, err := sy.buildRoomView(ctx, v, room, w, w.to, fullState, f)
	if err != nil {
		return nil, nil, err
	}
	jr := &joinedRoom{Timeline: rv.timeline}
	jr.State.Events = rv.state
	jr.Ephemeral.Events = []jsontext.Value{}
	eph, err := sy.ephemeral(ctx, v, room, w)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range eph {
		if f.Room.Ephemeral.Allows(room.ID, ephemeralType(e), "", false) {
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, e)
		}
	}
	jr.AccountData.Events = []jsontext.Value{}
	for _, a := range accountData {
		if a.RoomID == room.ID && f.Room.AccountData.Allows(room.ID, a.Type, sess.UserID, false) {
			jr.AccountData.Events = append(jr.AccountData.Events, appendAccountData(nil, a))
		}
	}
	if !w.initial && !fullState && !rv.newlyJoined && len(jr.Timeline.Events) == 0 && len(jr.State.Events) == 0 &&
		len(jr.Ephemeral.Events) == 0 && len(jr.AccountData.Events) == 0 {
		return nil, rv, nil
	}
	if jr.UnreadNotifications, jr.UnreadThreadNotifications, err = sy.unread(ctx, sess.UserID, room, f.Room.Timeline.UnreadThreadNotifications); err != nil {
		return nil, nil, err
	}
	if w.initial || fullState || rv.newlyJoined {
		if jr.Summary, err = sy.summary(ctx, room, sess.UserID); err != nil {
			return nil, nil, err
		}
	} else if hasMemberChange(rv.events) {
		joined, invited := room.MemberCounts()
		jr.Summary.JoinedMemberCount, jr.Summary.InvitedMemberCount = &joined, &invited
	}
	return jr, rv, nil
}

// ephemeralType reads the type of an encoded ephemeral event.
func ephemeralType(e []byte) string {
	if bytes.Contains(e, []byte(`"type":"m.typing"`)) {
		return "m.typing"
	}
	return "m.receipt"
}

// summary is a room's member counts and, for rooms without a name or alias, the heroes
// (up to five other members) clients name it after.
func (sy *Syncer) summary(ctx context.Context, room *live.Room, userID string) (roomSummary, error) {
	var s roomSummary
	roomID := room.ID
	joined, invited := room.MemberCounts()
	s.JoinedMemberCount, s.InvitedMemberCount = &joined, &invited
	named, err := sy.store.CurrentState(ctx, roomID, storage.StateKeyOf{Type: "m.room.name"}, storage.StateKeyOf{Type: "m.room.canonical_alias"})
	if err != nil {
		return s, mxerr.Internal(err)
	}
	for i := range named {
		if len(clientevent.Content(&named[i])) > 2 {
			return s, nil
		}
	}
	members, err := sy.store.Members(ctx, roomID, visibility.Join, visibility.Invite)
	if err != nil {
		return s, mxerr.Internal(err)
	}
	s.Heroes = []string{}
	for _, m := range members {
		if m.UserID != userID && len(s.Heroes) < 5 {
			s.Heroes = append(s.Heroes, m.UserID)
		}
	}
	return s, nil
}

func hasMemberChange(evs []*clientevent.Encoded) bool {
	for _, e := range evs {
		if e.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// timelineSenders are the senders of the timeline, and the user.
func timelineSenders(evs []*clientevent.Encoded, userID string) map[string]bool {
	senders := map[string]bool{userID: true}
	for _, e := range evs {
		senders[e.Sender] = true
	}
	return senders
}

// keepMembers drops member events of users not in keep (lazy-loading members).
func keepMembers(state []storage.Event, keep map[string]bool) []storage.Event {
	return slices.DeleteFunc(state, func(e storage.Event) bool {
		return e.Type == "m.room.member" && !keep[*e.StateKey]
	})
}

// dropInTimeline removes state already in the timeline and what the state filter excludes.
func dropInTimeline(state []storage.Event, timeline []*clientevent.Encoded, sf *filter.RoomEventFilter) []storage.Event {
	inTimeline := make(map[string]bool, len(timeline))
	for _, e := range timeline {
		inTimeline[e.ID] = true
	}
	seen := map[string]bool{}
	return slices.DeleteFunc(state, func(e storage.Event) bool {
		if inTimeline[e.ID] || seen[e.ID] || !sf.Allows(e.RoomID, e.Type, e.Sender, false) {
			return true
		}
		seen[e.ID] = true
		return false
	})
}

// lazyMembers returns, for an incremental lazy-loading sync, the member events of the
// timeline's senders as of the timeline start, leaving out those this device was already
// sent unless redundant members are asked for.
func (sy *Syncer) lazyMembers(ctx context.Context, v *viewer, room *live.Room, events []*clientevent.Encoded, start stream.Pos, redundant bool) ([]storage.Event, error) {
	senders := timelineSenders(events, "")
	delete(senders, "")
	var keys []storage.StateKeyOf
	for u := range senders {
		keys = append(keys, storage.StateKeyOf{Type: "m.room.member", StateKey: u})
	}
	if len(keys) == 0 {
		return nil, nil
	}
	state, err := sy.store.StateAt(ctx, room.ID, start, keys...)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if redundant {
		return state, nil
	}
	sent := sy.sentMembers(v, room.ID)
	return slices.DeleteFunc(state, func(e storage.Event) bool { return sent[*e.StateKey] == e.ID }), nil
}

// ephemeral returns the room's typing set (when it changed, or on an initial sync when
// someone types) and receipts in the window, without room_id as /sync wants them.
func (sy *Syncer) ephemeral(ctx context.Context, v *viewer, room *live.Room, w syncWindow) ([]jsontext.Value, error) {
	var out []jsontext.Value
	items, ok := room.Items(w.since, w.to)
	if !ok || w.initial {
		t, err := sy.store.TypingIn(ctx, room.ID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.Internal(err)
		}
		if err == nil && t.Pos > w.since && t.Pos <= w.to && (!w.initial || len(t.UserIDs) > 0) {
			out = append(out, live.TypingItem(t).SyncEDU)
		}
		rs, err := sy.store.Receipts(ctx, room.ID, w.since, w.to)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		for _, r := range rs {
			if r.Type != "m.read.private" || r.UserID == v.reader.UserID {
				out = append(out, live.ReceiptItem(r).SyncEDU)
			}
		}
		return out, nil
	}
	var typing []byte
	for _, it := range items {
		switch it.Kind {
		case live.KindTyping:
			typing = it.SyncEDU
		case live.KindReceipt:
			if !it.Private || it.UserID == v.reader.UserID {
				out = append(out, it.SyncEDU)
			}
		}
	}
	if typing != nil {
		out = append([]jsontext.Value{typing}, out...)
	}
	return out, nil
}

// unread is the user's unread notification counts in the room, from the room's memory
// when it reaches back that far. With the filter's unread_thread_notifications, the main
// timeline's counts and each thread's are given apart (the spec).
func (sy *Syncer) unread(ctx context.Context, userID string, room *live.Room, byThread bool) (unreadCounts, map[string]unreadCounts, error) {
	u, rp, ok := room.Unread(userID, byThread)
	if !ok {
		var err error
		if u, err = live.UnreadFromStorage(ctx, sy.store, room.ID, userID, rp, byThread); err != nil {
			return unreadCounts{}, nil, mxerr.Internal(err)
		}
	}
	if !byThread {
		return unreadCounts{NotificationCount: u.Total.Notify, HighlightCount: u.Total.Highlight}, nil, nil
	}
	main := u.Threads[""]
	var threads map[string]unreadCounts
	for t, c := range u.Threads {
		if t == "" {
			continue
		}
		if threads == nil {
			threads = map[string]unreadCounts{}
		}
		threads[t] = unreadCounts{NotificationCount: c.Notify, HighlightCount: c.Highlight}
	}
	return unreadCounts{NotificationCount: main.Notify, HighlightCount: main.Highlight}, threads, nil
}

// strippedTypes are the state events shown with an invite.
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

// invitedRoom is an invite's section of a sync response, or nil when the user ignores its
// sender (m.ignored_user_list hides invites too, as in Synapse).
func (sy *Syncer) invitedRoom(ctx context.Context, sess *auth.Session, m storage.Member) (*invitedRoom, error) {
	invite, err := sy.store.EventByID(ctx, m.EventID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if !sess.IsGuest {
		ignored, err := sy.hub.Ignored(ctx, sess.UserID)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		if _, ok := ignored[invite.Sender]; ok {
			return nil, nil
		}
	}
	keys := make([]storage.StateKeyOf, len(strippedTypes))
	for i, t := range strippedTypes {
		keys[i] = storage.StateKeyOf{Type: t}
	}
	state, err := sy.store.CurrentState(ctx, m.RoomID, keys...)
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
	v, err := sy.filteringViewer(ctx, sess, room, false)
	if err != nil {
		return nil, err
	}
	rv, err := sy.buildRoomView(ctx, v, room, w, m.Pos, false, f)
	if err != nil {
		return nil, err
	}
	lr := &leftRoom{Timeline: rv.timeline}
	lr.State.Events = rv.state
	lr.AccountData.Events = []jsontext.Value{}
	return lr, nil
}
