package live

import (
	"context"
	"slices"
	"sort"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// NotifyingTypes are the event types counted as unread notifications. There are no push
// rules yet, so every such message from someone else counts.
var NotifyingTypes = []string{"m.room.message", "m.room.encrypted"}

// notifyCap bounds how many notifying events a room remembers for unread counts; users
// further behind are counted from storage.
const notifyCap = 10000

// unreadIndex answers "how many messages from others after position P" without storage:
// the positions of the room's recent notifying events, and each sender's own among them.
type unreadIndex struct {
	all      []stream.Pos
	bySender map[string][]stream.Pos
	complete bool // all holds every notifying event of the room
	reads    map[string]stream.Pos
}

func isNotifying(t string) bool { return slices.Contains(NotifyingTypes, t) }

func (u *unreadIndex) add(pos stream.Pos, sender string) {
	u.all = append(u.all, pos)
	u.bySender[sender] = append(u.bySender[sender], pos)
	if len(u.all) > notifyCap {
		drop := len(u.all) - notifyCap/2
		u.all = slices.Clone(u.all[drop:])
		u.complete = false
		for s, ps := range u.bySender {
			i := sort.Search(len(ps), func(i int) bool { return ps[i] >= u.all[0] })
			if i == len(ps) {
				delete(u.bySender, s)
			} else {
				u.bySender[s] = slices.Clone(ps[i:])
			}
		}
	}
}

// countAfter counts notifying events after pos not sent by user; false when the index
// does not reach back that far.
func (u *unreadIndex) countAfter(pos stream.Pos, user string) (int, bool) {
	if !u.complete && (len(u.all) == 0 || pos < u.all[0]-1) {
		return 0, false
	}
	after := func(ps []stream.Pos) int {
		return len(ps) - sort.Search(len(ps), func(i int) bool { return ps[i] > pos })
	}
	return after(u.all) - after(u.bySender[user]), true
}

func (u *unreadIndex) read(user string, upTo stream.Pos) {
	if upTo > u.reads[user] {
		u.reads[user] = upTo
	}
}

// loadUnread fills a room's unread index from storage as of cur.
func loadUnread(ctx context.Context, st storage.Reader, roomID string, cur stream.Pos) (*unreadIndex, error) {
	u := &unreadIndex{bySender: map[string][]stream.Pos{}, reads: map[string]stream.Pos{}}
	evs, err := st.EventSenders(ctx, roomID, NotifyingTypes, cur, notifyCap)
	if err != nil {
		return nil, err
	}
	u.complete = len(evs) < notifyCap
	for i := len(evs) - 1; i >= 0; i-- {
		u.add(evs[i].Pos, evs[i].Sender)
	}
	rs, err := st.Receipts(ctx, roomID, -1, cur)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.Type == "m.read" || r.Type == "m.read.private" {
			u.read(r.UserID, r.EventPos)
		}
	}
	return u, nil
}

// Unread counts the messages from others that the user has not read: those after their
// read receipt, or after their latest join. false means the room does not remember that
// far back and the caller must count in storage from the returned position.
func (r *Room) Unread(userID string) (int, stream.Pos, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	after := r.unread.reads[userID]
	for _, c := range r.members[userID] {
		if c.Membership == "join" && c.Pos > after {
			after = c.Pos
		}
	}
	n, ok := r.unread.countAfter(after, userID)
	return n, after, ok
}
