package live

// What the push-rule evaluation (internal/notify) reads from a room while an event is
// being written.

type memberName struct{ name, lower string }

// JoinedMember is a joined member with their display name in the room.
type JoinedMember struct {
	UserID           string
	DisplayName      string
	LowerDisplayName string
}

// LoadedRoom returns the room if it is in memory, without loading it (nil otherwise). It
// takes no write lock, so a write in progress may call it.
func (h *Hub) LoadedRoom(roomID string) *Room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[roomID]
}

// JoinedMembers returns the joined members with their display names, if the room's latest
// applied event is head (the room's head in storage before the event being written):
// otherwise the room's memory is behind storage (another node wrote since) and the caller
// reads storage instead.
func (r *Room) JoinedMembers(head string) ([]JoinedMember, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if head == "" || r.head != head {
		return nil, false
	}
	out := make([]JoinedMember, 0, len(r.joined))
	for u := range r.joined {
		n := r.names[u]
		out = append(out, JoinedMember{UserID: u, DisplayName: n.name, LowerDisplayName: n.lower})
	}
	return out, true
}

// SetAccountDataHook makes fn be called, after commit, for every user whose account data
// changed, on this node or another (push rules caches forget the user's rules). Set it
// before serving; fn must not block.
func (h *Hub) SetAccountDataHook(fn func(userID string)) { h.onAccountData = fn }
