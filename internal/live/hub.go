// Package live is the single write path's last step and the long-poll's memory: every
// write that takes a stream position commits through Hub.Commit, which then, in position
// order, appends the new items to the rooms' in-memory windows and advances the Notifier.
// Readers serve recent items from those windows without touching storage.
package live

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Published is one committed stream item to announce.
type Published struct {
	// RoomID is the room the item belongs to ("" for per-user items such as account data).
	RoomID string
	Item   Item
	// Event is the stored event behind a KindEvent item (its state changes update the room).
	Event *storage.Event
	// Replaced are the new stored forms of events this item changed: the event it redacted,
	// and the state event whose prev_content copied the redacted content.
	Replaced []*storage.Event
	// Users are woken in addition to the room's joined members.
	Users []string
	// AccountDataOf names the user whose account data this item changed.
	AccountDataOf string
	// E2EE is what the item changed for end-to-end encryption (e2ee.go).
	E2EE *E2EENote
}

// Hub coordinates writes and holds the active rooms.
type Hub struct {
	store    storage.Store
	notifier *stream.Notifier
	limit    int
	log      *slog.Logger

	// writeMu serialises commit+publish, so items reach windows and the notifier in
	// position order.
	writeMu sync.Mutex

	mu    sync.Mutex
	rooms map[string]*Room
	users map[string]*userState

	deviceLists deviceListLog
}

// NewHub returns a hub publishing to notifier, keeping windows of limit items.
func NewHub(store storage.Store, notifier *stream.Notifier, limit int, log *slog.Logger) *Hub {
	return &Hub{store: store, notifier: notifier, limit: limit, log: log, rooms: make(map[string]*Room), users: make(map[string]*userState)}
}

// Notifier returns the hub's notifier.
func (h *Hub) Notifier() *stream.Notifier { return h.notifier }

// Commit runs fn in one transaction and, once it has committed, publishes what fn returned.
// fn must read and write only through tx (the hub's lock is held).
func (h *Hub) Commit(ctx context.Context, fn func(tx storage.Tx) ([]Published, error)) ([]Published, error) {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	var pubs []Published
	err := h.store.Write(ctx, func(tx storage.Tx) error {
		// Every stream writer, on every node, goes one at a time from here to commit.
		if err := tx.LockStream(ctx); err != nil {
			return err
		}
		var err error
		if pubs, err = fn(tx); err != nil {
			return err
		}
		if len(pubs) > 0 {
			return tx.Notify(ctx, StreamChannel, strconv.FormatInt(int64(topPos(pubs)), 10))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Positions below ours were committed before our transaction took the stream lock; if
	// another node wrote them, publish them first, so items always go out in order.
	if first := firstPos(pubs); first > 0 {
		if err := h.catchUpLocked(context.Background(), first-1); err != nil {
			h.log.Error("catching up before publishing", "err", err)
		}
	}
	h.publish(pubs)
	return pubs, nil
}

func topPos(pubs []Published) stream.Pos {
	var top stream.Pos
	for _, p := range pubs {
		top = max(top, p.Item.Pos)
	}
	return top
}

func firstPos(pubs []Published) stream.Pos {
	var first stream.Pos
	for _, p := range pubs {
		if p.Item.Pos > 0 && (first == 0 || p.Item.Pos < first) {
			first = p.Item.Pos
		}
	}
	return first
}

// publish applies committed items to loaded rooms and wakes their listeners.
func (h *Hub) publish(pubs []Published) {
	var top stream.Pos
	keys := make([]stream.Key, 0, 8)
	for i := range pubs {
		p := &pubs[i]
		top = max(top, p.Item.Pos)
		h.applyUser(p)
		for _, u := range p.Users {
			keys = append(keys, stream.UserKey(u))
		}
		if p.RoomID == "" {
			continue
		}
		// The item has committed, so a room loaded now already contains it; apply skips it.
		r, err := h.roomLocked(context.Background(), p.RoomID)
		if err != nil {
			h.log.Error("loading room to publish", "room", p.RoomID, "err", err)
			continue
		}
		r.used.Store(time.Now().Unix())
		r.apply(p)
		// Members' /sync listeners subscribe to the room key (Notifier.ListenUser).
		keys = append(keys, stream.RoomKey(p.RoomID))
		if p.Event != nil && p.Event.Type == "m.room.member" && p.Event.StateKey != nil {
			keys = append(keys, stream.UserKey(*p.Event.StateKey))
		}
	}
	if top > 0 {
		h.notifier.Advance(top, keys...)
	}
}

// Room returns the active room, loading it if needed; storage.ErrNotFound for an unknown room.
func (h *Hub) Room(ctx context.Context, roomID string) (*Room, error) {
	h.mu.Lock()
	r := h.rooms[roomID]
	h.mu.Unlock()
	if r != nil {
		r.used.Store(time.Now().Unix())
		return r, nil
	}
	// Load under the write lock, so no item is published between reading storage and
	// installing the room.
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	return h.roomLocked(ctx, roomID)
}

// roomLocked is Room for callers that hold writeMu.
func (h *Hub) roomLocked(ctx context.Context, roomID string) (*Room, error) {
	h.mu.Lock()
	r := h.rooms[roomID]
	h.mu.Unlock()
	if r != nil {
		return r, nil
	}
	r, err := loadRoom(ctx, h.store, roomID, h.notifier.Current(), h.limit)
	if err != nil {
		return nil, err
	}
	r.used.Store(time.Now().Unix())
	h.mu.Lock()
	h.rooms[roomID] = r
	h.mu.Unlock()
	return r, nil
}

// Evict drops rooms and users not used for idle: idle rooms hold no memory. A dropped room
// is loaded again from storage when next needed. Rooms with waiting long-polls are in use
// (their requests read them on every wake-up and at their deadline).
func (h *Hub) Evict(idle time.Duration) (rooms, users int) {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	cutoff := time.Now().Add(-idle).Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, r := range h.rooms {
		if r.used.Load() < cutoff {
			delete(h.rooms, id)
			rooms++
		}
	}
	for id, u := range h.users {
		if u.used.Load() < cutoff {
			delete(h.users, id)
			users++
		}
	}
	return rooms, users
}

// ActiveRooms is the number of rooms held in memory.
func (h *Hub) ActiveRooms() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms)
}
