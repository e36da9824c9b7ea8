package live

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// Change is one membership change of a user in a room.
type Change struct {
	Pos        stream.Pos
	Membership string
	Prev       string
}

// Room is the in-memory view of an active room: its access settings, every user's
// membership history, and a window of its most recent stream items, each encoded once.
// It is changed only by the Hub's publish step, under the Hub's write lock.
type Room struct {
	ID      string
	Version string
	Creator string
	// used is when the room was last read or written (unix seconds), for eviction.
	used atomic.Int64

	mu          sync.RWMutex
	hv          string
	guestAccess string
	joinRule    string
	// settingIDs are the event IDs of the current history visibility, guest access and
	// join rule events, so that a redaction of one of them is applied.
	settingIDs map[string]string
	members    map[string][]Change
	// truncated marks users whose oldest membership changes were dropped from members
	// (see maxHistory): their full history is read from storage when needed.
	truncated map[string]struct{}
	joined    map[string]struct{}
	invited   map[string]struct{}
	names     map[string]memberName // joined and invited members' display names
	// pushMembers is the joined members for push-rule evaluation (push.go).
	pushMembers joinedCache
	head        string // ID of the latest event applied
	unread      *unreadIndex
	items       []Item
	base        stream.Pos // every item of the room with Pos > base is in items
	limit       int
	// children indexes the window's events by the event they relate to.
	children childIndex
}

// Head is the ID of the latest event the room's memory applied.
func (r *Room) Head() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.head
}

// WorldReadable reports whether the room is world-readable now.
func (r *Room) WorldReadable() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.hv == visibility.WorldReadable
}

// Membership returns the user's current membership ("" if none).
func (r *Room) Membership(userID string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ch := r.members[userID]
	if len(ch) == 0 {
		return ""
	}
	return ch[len(ch)-1].Membership
}

// maxHistory bounds the membership changes kept per user: a user who joins and leaves
// over and over must not grow the room's memory without end.
const maxHistory = 64

// History returns a copy of a user's membership changes, oldest first, and whether it is
// complete (false when the oldest were dropped: read them from storage, see
// Hub.History).
func (r *Room) History(userID string) ([]Change, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, cut := r.truncated[userID]
	return slices.Clone(r.members[userID]), !cut
}

// MembershipAt returns the user's membership at the item at pos, from a history returned
// by History. For the user's own member event the "more joined" of before and after
// counts, so a user sees their own join and the leave that follows it.
func MembershipAt(history []Change, pos stream.Pos) string {
	i := sort.Search(len(history), func(i int) bool { return history[i].Pos > pos }) - 1
	if i < 0 {
		return ""
	}
	c := history[i]
	if c.Pos == pos {
		return visibility.MoreJoined(c.Prev, c.Membership)
	}
	return c.Membership
}

// Joined returns the users joined now.
func (r *Room) Joined() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.joined))
	for u := range r.joined {
		out = append(out, u)
	}
	return out
}

// MemberCounts are the numbers of joined and invited members.
func (r *Room) MemberCounts() (joined, invited int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.joined), len(r.invited)
}

// Items returns copies of the room's items with from < Pos <= to, and false when the
// window no longer reaches back to from (the caller then reads storage).
func (r *Room) Items(from, to stream.Pos) ([]Item, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if from < r.base {
		return nil, false
	}
	i := sort.Search(len(r.items), func(i int) bool { return r.items[i].Pos > from })
	j := sort.Search(len(r.items), func(i int) bool { return r.items[i].Pos > to })
	if i >= j {
		return nil, true
	}
	return slices.Clone(r.items[i:j]), true
}

// HasItemsAfter reports whether anything of the room happened in (from, to].
func (r *Room) HasItemsAfter(from, to stream.Pos) bool {
	items, ok := r.Items(from, to)
	return !ok || len(items) > 0
}

// apply adds a published item and updates the in-memory state it changes.
func (r *Room) apply(p *Published) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range p.Replaced {
		if e.RedactedBecause != nil {
			r.unread.redact(e.Pos)
		}
		for i := range r.items {
			if r.items[i].Kind == KindEvent && r.items[i].Event.ID == e.ID {
				r.children.remove(r.items[i].Event)
				r.items[i] = EventItem(e)
				r.children.add(r.items[i].Event)
			}
		}
		// A redacted current setting takes effect with its stripped content.
		if e.StateKey != nil && *e.StateKey == "" && r.settingIDs[e.Type] == e.ID {
			r.applyState(e)
		}
	}
	if n := len(r.items); n > 0 && p.Item.Pos <= r.items[n-1].Pos {
		return // already loaded from storage
	}
	if p.Item.Pos <= r.base {
		return
	}
	if e := p.Event; e != nil {
		r.head = e.ID
	}
	for _, e := range p.State {
		r.applyStateAt(e, p.Item.Pos)
	}
	if p.Push != nil {
		r.unread.add(p.Push)
	}
	if p.Item.Kind == KindReceipt && p.Item.ReadUpTo > 0 {
		r.unread.read(p.Item.UserID, p.Item.Thread, p.Item.ReadUpTo)
	}
	r.items = append(r.items, p.Item)
	if p.Item.Kind == KindEvent {
		r.children.add(p.Item.Event)
	}
	if over := len(r.items) - r.limit; over > 0 {
		for i := range over {
			r.children.dropped(&r.items[i])
		}
		r.base = r.items[over-1].Pos
		if cap(r.items) > 2*r.limit {
			r.items = slices.Clone(r.items[over:])
		} else {
			r.items = r.items[over:]
		}
	}
}

// applyStateAt applies an event that became current state at pos (an older event may
// become current again through state resolution; an event without an ID removes its key).
func (r *Room) applyStateAt(e *storage.Event, pos stream.Pos) {
	if e.ID == "" {
		removed := *e
		removed.Membership = visibility.Leave
		if e.Type != "m.room.member" {
			removed.PDU = []byte(`{"content":{}}`)
		}
		e = &removed
	}
	if e.Pos != pos {
		moved := *e
		moved.Pos = pos
		if e.Type == "m.room.member" {
			moved.PrevMembership = r.membershipLocked(*e.StateKey)
		}
		e = &moved
	}
	r.applyState(e)
}

func (r *Room) membershipLocked(userID string) string {
	if h := r.members[userID]; len(h) > 0 {
		return h[len(h)-1].Membership
	}
	return ""
}

// applyState updates settings and memberships for a state event.
func (r *Room) applyState(e *storage.Event) {
	switch e.Type {
	case "m.room.history_visibility":
		r.hv = visibility.Normalize(contentString(e, "history_visibility"))
		r.settingIDs[e.Type] = e.ID
	case "m.room.guest_access":
		r.guestAccess = contentString(e, "guest_access")
		r.settingIDs[e.Type] = e.ID
	case "m.room.join_rules":
		r.joinRule = contentString(e, "join_rule")
		r.settingIDs[e.Type] = e.ID
	case "m.room.member":
		u := *e.StateKey
		// A change that keeps the membership (a new display name) changes no one's view.
		if h := r.members[u]; len(h) == 0 || h[len(h)-1].Membership != e.Membership {
			h = append(h, Change{Pos: e.Pos, Membership: e.Membership, Prev: e.PrevMembership})
			if len(h) > maxHistory {
				h = slices.Clone(h[len(h)-maxHistory/2:])
				r.truncated[u] = struct{}{}
			}
			r.members[u] = h
		}
		delete(r.joined, u)
		delete(r.invited, u)
		delete(r.names, u)
		r.pushMembers.mu.Lock()
		r.pushMembers.valid = false
		r.pushMembers.mu.Unlock()
		switch e.Membership {
		case visibility.Join:
			r.joined[u] = struct{}{}
		case visibility.Invite:
			r.invited[u] = struct{}{}
		}
		if e.Membership == visibility.Join || e.Membership == visibility.Invite {
			if name := contentString(e, "displayname"); name != "" {
				r.names[u] = memberName{name: name, lower: strings.ToLower(name)}
			}
		}
	}
}

func contentString(e *storage.Event, key string) string {
	var pdu struct {
		Content map[string]any `json:"content"`
	}
	if json.Unmarshal(e.PDU, &pdu) != nil {
		return ""
	}
	s, _ := pdu.Content[key].(string)
	return s
}

// loadRoom builds a Room from storage as of position cur.
func loadRoom(ctx context.Context, st storage.Reader, roomID string, cur stream.Pos, limit int) (*Room, error) {
	info, err := st.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	r := &Room{ID: roomID, Version: info.Version, Creator: info.Creator, hv: visibility.Shared,
		settingIDs: make(map[string]string), members: make(map[string][]Change), truncated: make(map[string]struct{}), joined: make(map[string]struct{}), invited: make(map[string]struct{}),
		names: make(map[string]memberName), limit: limit, children: childIndex{}}
	if r.unread, err = loadUnread(ctx, st, roomID, cur); err != nil {
		return nil, err
	}
	// State as of cur, not the current state: on a node catching up, storage may already
	// hold later changes, which will be published in their turn.
	state, err := st.StateAt(ctx, roomID, cur,
		storage.StateKeyOf{Type: "m.room.history_visibility"},
		storage.StateKeyOf{Type: "m.room.guest_access"},
		storage.StateKeyOf{Type: "m.room.join_rules"})
	if err != nil {
		return nil, err
	}
	for i := range state {
		if state[i].Pos <= cur {
			r.applyState(&state[i])
		}
	}
	members, err := st.MemberEvents(ctx, roomID)
	if err != nil {
		return nil, err
	}
	for i := range members {
		if members[i].Pos <= cur {
			r.applyState(&members[i])
		}
	}
	// The window: the latest events, and every other item since the oldest of them.
	events, err := st.RoomEvents(ctx, roomID, cur, 0, false, limit)
	if err != nil {
		return nil, err
	}
	if len(events) == limit {
		r.base = events[len(events)-1].Pos - 1
	}
	if len(events) > 0 {
		r.head = events[0].ID
	}
	for i := len(events) - 1; i >= 0; i-- {
		r.items = append(r.items, EventItem(&events[i]))
	}
	receipts, err := st.Receipts(ctx, roomID, r.base, cur)
	if err != nil {
		return nil, err
	}
	for _, rc := range receipts {
		r.items = append(r.items, ReceiptItem(rc))
	}
	if t, err := st.TypingIn(ctx, roomID); err == nil && t.Pos > r.base && t.Pos <= cur {
		r.items = append(r.items, TypingItem(t))
	}
	joined := make([]string, 0, len(r.joined))
	for u := range r.joined {
		joined = append(joined, u)
	}
	ps, err := st.PresenceFor(ctx, joined, r.base, cur)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		r.items = append(r.items, PresenceItem(p))
	}
	sort.SliceStable(r.items, func(i, j int) bool { return r.items[i].Pos < r.items[j].Pos })
	if over := len(r.items) - limit; over > 0 {
		r.base = r.items[over-1].Pos
		r.items = slices.Clone(r.items[over:])
	}
	for i := range r.items {
		if r.items[i].Kind == KindEvent {
			r.children.add(r.items[i].Event)
		}
	}
	return r, nil
}
