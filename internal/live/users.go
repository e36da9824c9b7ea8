package live

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// userState is what /sync needs to know about a user on every wake-up, kept in memory:
// their memberships and when their account data last changed.
type userState struct {
	rooms          map[string]storage.Member
	accountDataPos stream.Pos
	// ignored is the user's m.ignored_user_list as of account-data position ignoredAt;
	// it is read again only after their account data changes.
	ignored   map[string]struct{}
	ignoredAt stream.Pos
	// toDevice is, per device, the position of the newest to-device message put in its
	// inbox; toDeviceAcked how far this process has deleted the inbox (e2ee.go).
	toDevice, toDeviceAcked map[string]stream.Pos
	// keyCounts caches each device's key counts for /sync; keyGen moves on every
	// invalidation, so a load that raced one is not kept (e2ee.go).
	keyCounts map[string]DeviceKeyCounts
	keyGen    uint64
	used      atomic.Int64
}

// IgnoredUserList is the account data naming the users whose events a user does not want.
const IgnoredUserList = "m.ignored_user_list"

// parseIgnored reads the user IDs out of m.ignored_user_list content.
func parseIgnored(content []byte) map[string]struct{} {
	var c struct {
		IgnoredUsers map[string]jsontext.Value `json:"ignored_users"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.IgnoredUsers) == 0 {
		return nil
	}
	out := make(map[string]struct{}, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		out[u] = struct{}{}
	}
	return out
}

// Ignored returns the set of users the user ignores (nil for none). Do not modify it.
func (h *Hub) Ignored(ctx context.Context, userID string) (map[string]struct{}, error) {
	u, err := h.user(ctx, userID)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	set, at, pos := u.ignored, u.ignoredAt, u.accountDataPos
	h.mu.Unlock()
	if at == pos {
		return set, nil
	}
	a, err := h.store.AccountDataItem(ctx, userID, "", IgnoredUserList)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	set = parseIgnored(a.Content)
	h.mu.Lock()
	if u.accountDataPos == pos {
		u.ignored, u.ignoredAt = set, pos
	}
	h.mu.Unlock()
	return set, nil
}

// Memberships returns the user's memberships (any state), loading them on first use.
func (h *Hub) Memberships(ctx context.Context, userID string) ([]storage.Member, error) {
	u, err := h.user(ctx, userID)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	out := slices.Collect(maps.Values(u.rooms))
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b storage.Member) int { return int(a.Pos - b.Pos) })
	return out, nil
}

// AccountDataPos is the position of the user's latest account-data change.
func (h *Hub) AccountDataPos(ctx context.Context, userID string) (stream.Pos, error) {
	u, err := h.user(ctx, userID)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return u.accountDataPos, nil
}

// Forgot records that the user forgot a room (forgetting takes no stream position).
func (h *Hub) Forgot(userID, roomID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.users[userID]; u != nil {
		if m, ok := u.rooms[roomID]; ok {
			m.Forgotten = true
			u.rooms[roomID] = m
		}
	}
}

func (h *Hub) user(ctx context.Context, userID string) (*userState, error) {
	h.mu.Lock()
	u := h.users[userID]
	h.mu.Unlock()
	if u != nil {
		u.used.Store(time.Now().Unix())
		return u, nil
	}
	// Load in the publishing turn, so no membership change is published in between (a
	// user is two small reads).
	h.seq.acquire(nil)
	defer h.seq.release(nil)
	h.mu.Lock()
	u = h.users[userID]
	h.mu.Unlock()
	if u != nil {
		return u, nil
	}
	ms, err := h.store.MembershipsOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	ad, err := h.store.AccountData(ctx, userID, -1, h.notifier.Current())
	if err != nil {
		return nil, err
	}
	heads, err := h.store.ToDeviceHeads(ctx, userID)
	if err != nil {
		return nil, err
	}
	u = &userState{rooms: make(map[string]storage.Member, len(ms)), toDevice: heads, toDeviceAcked: map[string]stream.Pos{},
		keyCounts: map[string]DeviceKeyCounts{}}
	for _, m := range ms {
		u.rooms[m.RoomID] = m
	}
	for _, a := range ad {
		u.accountDataPos = max(u.accountDataPos, a.Pos)
		if a.Type == IgnoredUserList && a.RoomID == "" {
			u.ignored = parseIgnored(a.Content)
		}
	}
	u.ignoredAt = u.accountDataPos
	u.used.Store(time.Now().Unix())
	h.mu.Lock()
	h.users[userID] = u
	h.mu.Unlock()
	return u, nil
}

// applyUser updates loaded users for a published item (called in the publishing turn).
func (h *Hub) applyUser(p *Published) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applyE2EELocked(p)
	if p.AccountDataOf != "" {
		if u := h.users[p.AccountDataOf]; u != nil {
			u.accountDataPos = max(u.accountDataPos, p.Item.Pos)
		}
		if h.onAccountData != nil {
			h.onAccountData(p.AccountDataOf, p.AccountDataType)
		}
	}
	for _, e := range p.State {
		if e.Type != "m.room.member" {
			continue
		}
		membership := e.Membership
		if e.ID == "" {
			membership = "leave"
		}
		// A user loaded from storage may already know a later membership.
		if u := h.users[*e.StateKey]; u != nil && u.rooms[e.RoomID].Pos < p.Item.Pos {
			u.rooms[e.RoomID] = storage.Member{RoomID: e.RoomID, UserID: *e.StateKey, Membership: membership, EventID: e.ID, Pos: p.Item.Pos}
		}
	}
}

// History returns a user's complete membership history in a room: from memory, or from
// storage for the rare user whose history outgrew what the room keeps.
func (h *Hub) History(ctx context.Context, r *Room, userID string) ([]Change, error) {
	hist, complete := r.History(userID)
	if complete {
		return hist, nil
	}
	evs, err := h.store.UserMemberEvents(ctx, r.ID, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Change, 0, len(evs))
	for _, e := range evs {
		if n := len(out); n == 0 || out[n-1].Membership != e.Membership {
			out = append(out, Change{Pos: e.Pos, Membership: e.Membership, Prev: e.PrevMembership})
		}
	}
	return out, nil
}
