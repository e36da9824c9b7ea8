package live

import (
	"sync"
	"sync/atomic"

	"porthole/internal/push"
)

// What the push-rule evaluation (internal/notify) reads from a room while an event is
// being written.

type memberName struct{ name, lower string }

// joinedCache is the room's joined members as push rules see them, built when first asked
// for after a membership change and shared (read-only) by every evaluation until the next.
type joinedCache struct {
	mu      sync.Mutex
	members []push.Member
	version uint64 // memberVersions' value at the last rebuild
	valid   bool
}

// memberVersions numbers member lists across all rooms, so that a version names one list
// even after its room is evicted and loaded again (a cache keyed by room and version
// must never match a newer list of the same room).
var memberVersions atomic.Uint64

// LoadedRoom returns the room if it is in memory, without loading it (nil otherwise). It
// takes no write lock, so a write in progress may call it.
func (h *Hub) LoadedRoom(roomID string) *Room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[roomID]
}

// JoinedMembers returns the joined members with their display names, and a version that
// changes whenever they do, if the room's latest applied event is head (the room's head in
// storage before the event being written); otherwise the room's memory is behind storage
// (another node wrote since) and the caller reads storage instead. The slice is shared:
// callers must not change it.
func (r *Room) JoinedMembers(head string) ([]push.Member, uint64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if head == "" || r.head != head {
		return nil, 0, false
	}
	c := &r.pushMembers
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		out := make([]push.Member, 0, len(r.joined))
		for u := range r.joined {
			n := r.names[u]
			out = append(out, push.Member{UserID: u, DisplayName: n.name, LowerDisplayName: n.lower})
		}
		c.members, c.valid = out, true
		c.version = memberVersions.Add(1)
	}
	return c.members, c.version, true
}

// SetAccountDataHook makes fn be called, after commit, for every account-data change, on
// this node or another (push rules caches forget the user's rules). Set it before serving;
// fn must not block.
func (h *Hub) SetAccountDataHook(fn func(userID, dataType string)) { h.onAccountData = fn }
