package live

import (
	"context"
	"slices"
	"sort"
	"sync"

	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// E2EENote is what a published item changed for end-to-end encryption. The hub applies it
// to memory before it announces the item's position, so a /sync reading up to that
// position learns of it without asking storage.
type E2EENote struct {
	// DeviceLists are users whose devices or keys changed.
	DeviceLists []storage.DeviceListChange
	// ToDevice names, per user, the devices that got a to-device message at Item.Pos.
	ToDevice map[string][]string
	// Messages are those to-device messages, for the commit observer (application
	// services get their users' messages); they are not kept.
	Messages []storage.ToDeviceMessage
}

// deviceListLogSize bounds the recent device-list changes kept in memory; a /sync whose
// token is older than the oldest of them reads storage instead.
const deviceListLogSize = 4096

// deviceListLog holds the recent device-list changes, oldest first: every change with a
// position above base is in entries.
type deviceListLog struct {
	mu      sync.Mutex
	started bool
	base    stream.Pos
	entries []storage.DeviceListChange
}

func (l *deviceListLog) add(c storage.DeviceListChange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		// Nothing was published before this change since the process started, and every
		// position below it committed (and was published) first.
		l.started, l.base = true, c.Pos-1
	}
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].Pos > c.Pos })
	l.entries = slices.Insert(l.entries, i, c)
	if len(l.entries) > deviceListLogSize {
		drop := len(l.entries) - deviceListLogSize/2
		l.base = l.entries[drop-1].Pos
		l.entries = slices.Clone(l.entries[drop:])
	}
}

// DeviceListChanges returns the device-list changes with from < pos <= to from memory, or
// false when memory does not reach back to from (the caller then reads storage).
func (h *Hub) DeviceListChanges(from, to stream.Pos) ([]storage.DeviceListChange, bool) {
	l := &h.deviceLists
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		// Everything published from now on is logged; nothing was so far.
		l.started, l.base = true, h.notifier.Current()
	}
	if from < l.base {
		return nil, false
	}
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].Pos > from })
	var out []storage.DeviceListChange
	for _, c := range l.entries[i:] {
		if c.Pos > to {
			break
		}
		out = append(out, c)
	}
	return out, true
}

// applyE2EELocked records a published item's E2EE changes (called under h.mu, in position
// order, before the notifier announces the position).
func (h *Hub) applyE2EELocked(p *Published) {
	if p.E2EE == nil {
		return
	}
	for _, c := range p.E2EE.DeviceLists {
		h.deviceLists.add(c)
	}
	for userID, devices := range p.E2EE.ToDevice {
		u := h.users[userID]
		if u == nil {
			continue // loaded from storage when needed
		}
		for _, d := range devices {
			u.toDevice[d] = max(u.toDevice[d], p.Item.Pos)
		}
	}
}

// ToDeviceState returns the position of the newest message put in the device's inbox and
// how far this process has already deleted the inbox, from memory.
func (h *Hub) ToDeviceState(ctx context.Context, userID, deviceID string) (head, acked stream.Pos, err error) {
	u, err := h.user(ctx, userID)
	if err != nil {
		return 0, 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return u.toDevice[deviceID], u.toDeviceAcked[deviceID], nil
}

// ToDeviceDeleted records that the device's inbox was deleted up to upTo.
func (h *Hub) ToDeviceDeleted(userID, deviceID string, upTo stream.Pos) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.users[userID]; u != nil {
		u.toDeviceAcked[deviceID] = max(u.toDeviceAcked[deviceID], upTo)
		if u.toDevice[deviceID] <= upTo {
			delete(u.toDevice, deviceID)
			delete(u.toDeviceAcked, deviceID)
		}
	}
}

// CoMembers returns the users who share a joined room with userID, userID included: those
// to wake when userID's devices change.
func (h *Hub) CoMembers(ctx context.Context, userID string) ([]string, error) {
	ms, err := h.Memberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	seen := map[string]struct{}{userID: {}}
	out := []string{userID}
	for _, m := range ms {
		if m.Membership != visibility.Join {
			continue
		}
		r, err := h.Room(ctx, m.RoomID)
		if err != nil {
			return nil, err
		}
		for _, u := range r.Joined() {
			if _, ok := seen[u]; !ok {
				seen[u] = struct{}{}
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// e2eePublished turns the E2EE items of a batch another process wrote into items to
// publish. Only the members of rooms loaded here are woken: a /sync listening on this
// process has its rooms loaded.
func (h *Hub) e2eePublished(ctx context.Context, b storage.StreamBatch) ([]Published, error) {
	var pubs []Published
	for _, c := range b.DeviceLists {
		wake := []string{c.UserID}
		if c.OnlyFor != "" {
			wake = []string{c.OnlyFor}
		} else {
			ms, err := h.store.MembershipsOf(ctx, c.UserID)
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				if m.Membership != visibility.Join {
					continue
				}
				h.mu.Lock()
				r := h.rooms[m.RoomID]
				h.mu.Unlock()
				if r != nil {
					wake = append(wake, r.Joined()...)
				}
			}
		}
		pubs = append(pubs, Published{Item: Item{Pos: c.Pos}, Users: wake, E2EE: &E2EENote{DeviceLists: []storage.DeviceListChange{c}}})
	}
	byPos := map[stream.Pos]*E2EENote{}
	for _, m := range b.ToDevice {
		n := byPos[m.Pos]
		if n == nil {
			n = &E2EENote{ToDevice: map[string][]string{}}
			byPos[m.Pos] = n
		}
		n.ToDevice[m.UserID] = append(n.ToDevice[m.UserID], m.DeviceID)
	}
	for pos, n := range byPos {
		var users []string
		for u := range n.ToDevice {
			users = append(users, u)
		}
		pubs = append(pubs, Published{Item: Item{Pos: pos}, Users: users, E2EE: n})
	}
	return pubs, nil
}

// MemberChange is a user's membership before and after a stretch of a room's stream.
type MemberChange struct {
	UserID        string
	Before, After string
}

// MemberChanges returns the users whose membership changed with from < pos <= to, from
// memory: the window's member events when it reaches back to from, else every member's
// history.
func (r *Room) MemberChanges(from, to stream.Pos) []MemberChange {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var users []string
	if from >= r.base {
		i := sort.Search(len(r.items), func(i int) bool { return r.items[i].Pos > from })
		seen := map[string]bool{}
		for _, it := range r.items[i:] {
			if it.Pos > to {
				break
			}
			if e := it.Event; it.Kind == KindEvent && e.Type == "m.room.member" && e.StateKey != nil && !seen[*e.StateKey] {
				seen[*e.StateKey] = true
				users = append(users, *e.StateKey)
			}
		}
	} else {
		for u := range r.members {
			users = append(users, u)
		}
	}
	var out []MemberChange
	for _, u := range users {
		h := r.members[u]
		before, after := membershipUpTo(h, from), membershipUpTo(h, to)
		if before != after {
			out = append(out, MemberChange{UserID: u, Before: before, After: after})
		}
	}
	return out
}

// membershipUpTo is the membership after the last change at or before pos. Before the
// oldest change kept (a history cut at maxHistory) it is the one that change replaced.
func membershipUpTo(history []Change, pos stream.Pos) string {
	i := sort.Search(len(history), func(i int) bool { return history[i].Pos > pos }) - 1
	if i < 0 {
		if len(history) > 0 {
			return history[0].Prev
		}
		return ""
	}
	return history[i].Membership
}

// DeviceKeyCounts is what /sync tells a device about its keys: its unclaimed one-time keys
// per algorithm and the algorithms of its unused fallback keys.
type DeviceKeyCounts struct {
	OneTime        map[string]int
	UnusedFallback []string
}

// KeyCounts returns the device's key counts, from memory once read: an answered /sync
// costs no query. Uploads and claims invalidate them (KeyCountsChanged), on every process.
func (h *Hub) KeyCounts(ctx context.Context, userID, deviceID string) (DeviceKeyCounts, error) {
	u, err := h.user(ctx, userID)
	if err != nil {
		return DeviceKeyCounts{}, err
	}
	h.mu.Lock()
	c, ok := u.keyCounts[deviceID]
	gen := u.keyGen
	h.mu.Unlock()
	if ok {
		return c, nil
	}
	if c.OneTime, err = h.store.OneTimeKeyCounts(ctx, userID, deviceID); err != nil {
		return c, err
	}
	fallbacks, err := h.store.FallbackKeys(ctx, userID, deviceID)
	if err != nil {
		return c, err
	}
	c.UnusedFallback = []string{}
	for _, f := range fallbacks {
		if !f.Used {
			c.UnusedFallback = append(c.UnusedFallback, f.Algorithm)
		}
	}
	h.mu.Lock()
	if u.keyGen == gen {
		u.keyCounts[deviceID] = c
	}
	h.mu.Unlock()
	return c, nil
}

// KeyCountsChanged forgets a device's cached key counts ("*": all of the user's devices),
// after a committed upload or claim.
func (h *Hub) KeyCountsChanged(userID, deviceID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.users[userID]; u != nil {
		u.keyGen++
		if deviceID == "*" {
			clear(u.keyCounts)
		} else {
			delete(u.keyCounts, deviceID)
		}
	}
}
