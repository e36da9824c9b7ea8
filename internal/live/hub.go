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
	"sync/atomic"
	"time"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Published is one committed stream item to announce.
type Published struct {
	// RoomID is the room the item belongs to ("" for per-user items such as account data).
	RoomID string
	Item   Item
	// Event is the stored event behind a KindEvent item.
	Event *storage.Event
	// State are the events that became the room's current state with this item: the event
	// itself for a state event that extends the room, other events (or none) when state
	// resolution decided otherwise. An event without an ID removes its key.
	State []*storage.Event
	// Replaced are the new stored forms of events this item changed: the event it redacted,
	// and the state event whose prev_content copied the redacted content.
	Replaced []*storage.Event
	// Users are woken in addition to the room's joined members.
	Users []string
	// AccountDataOf names the user whose account data this item changed.
	AccountDataOf string
	// AccountDataType is the type of that account data.
	AccountDataType string
	// E2EE is what the item changed for end-to-end encryption (e2ee.go).
	E2EE *E2EENote
	// Push is what the push rules decided for Event (nil when nobody is notified).
	Push *storage.PushOutcome
}

// Hub coordinates writes and holds the active rooms.
type Hub struct {
	store    storage.Store
	notifier *stream.Notifier
	limit    int
	log      *slog.Logger

	// seq puts publication in position order: writers commit concurrently (the database
	// orders their positions), then publish one at a time, lowest position first.
	seq *sequencer

	mu    sync.Mutex
	rooms map[string]*Room
	users map[string]*userState

	onAccountData func(userID, dataType string) // see SetAccountDataHook
	// onCommit sees every commit's items inside its transaction (SetCommitObserver).
	onCommit func(ctx context.Context, tx storage.Tx, pubs []Published) error

	deviceLists deviceListLog
	// loading holds the rooms being read from storage, so concurrent requests for one
	// room wait for one load.
	loading map[string]*roomLoad
	// loadHook, set by tests, runs after a room was read from storage, before it is
	// brought up to date and installed.
	loadHook atomic.Pointer[func(roomID string)]
}

// SetLoadHook installs f to run whenever a room has been read from storage and is not
// yet installed (nil removes it). Tests use it to write at that moment.
func (h *Hub) SetLoadHook(f func(roomID string)) {
	if f == nil {
		h.loadHook.Store(nil)
		return
	}
	h.loadHook.Store(&f)
}

type roomLoad struct {
	done chan struct{}
	room *Room
	err  error
}

// NewHub returns a hub publishing to notifier, keeping windows of limit items.
func NewHub(store storage.Store, notifier *stream.Notifier, limit int, log *slog.Logger) *Hub {
	return &Hub{store: store, notifier: notifier, limit: limit, log: log, seq: newSequencer(),
		rooms: make(map[string]*Room), users: make(map[string]*userState), loading: make(map[string]*roomLoad)}
}

// WaitPublished waits, at most max, until the stream position pos has been published
// here (the rooms in memory have applied it), for readers woken by a commit rather than by
// the publish that follows it.
func (h *Hub) WaitPublished(ctx context.Context, pos stream.Pos, max time.Duration) {
	deadline := time.Now().Add(max)
	for wait := 50 * time.Microsecond; h.notifier.Current() < pos && time.Now().Before(deadline) && ctx.Err() == nil; wait = min(2*wait, 20*time.Millisecond) {
		time.Sleep(wait)
	}
}

// Notifier returns the hub's notifier.
func (h *Hub) Notifier() *stream.Notifier { return h.notifier }

// SetCommitObserver makes fn see, inside each commit's transaction and after the commit's
// own writes, the items the commit will publish (application services queue the ephemeral
// data they asked for); its error rolls the commit back. Set it before serving.
func (h *Hub) SetCommitObserver(fn func(ctx context.Context, tx storage.Tx, pubs []Published) error) {
	h.onCommit = fn
}

// Commit runs fn in one transaction and, once it has committed, publishes what fn returned,
// in position order with every other commit. fn must read and write only through tx.
func (h *Hub) Commit(ctx context.Context, fn func(tx storage.Tx) ([]Published, error)) ([]Published, error) {
	var pubs []Published
	var res *reservation
	err := h.store.Write(ctx, func(tx storage.Tx) error {
		// Every stream writer, on every node, goes one at a time from here to commit.
		if err := tx.LockStream(ctx); err != nil {
			return err
		}
		var err error
		if pubs, err = fn(tx); err != nil {
			return err
		}
		if h.onCommit != nil && len(pubs) > 0 {
			if err := h.onCommit(ctx, tx, pubs); err != nil {
				return err
			}
		}
		if first := firstPos(pubs); first > 0 {
			if err := tx.Notify(ctx, StreamChannel, strconv.FormatInt(int64(topPos(pubs)), 10)); err != nil {
				return err
			}
			// Reserved while this transaction still holds the stream: reservations come
			// in position order.
			res = h.seq.reserve(first, topPos(pubs))
		}
		return nil
	})
	if err != nil {
		h.seq.cancel(res)
		return nil, err
	}
	if res == nil {
		return pubs, nil
	}
	h.seq.acquire(res)
	defer h.seq.release(res)
	// Positions below ours that no local writer holds were committed by other nodes before
	// our transaction took the stream lock: publish them first, so items go out in order.
	if res.first-1 > h.notifier.Current() {
		if err := h.catchUpTurn(context.Background(), res.first-1); err != nil {
			h.log.Error("catching up before publishing", "err", err)
		}
	}
	if res.first <= h.notifier.Current() {
		return pubs, nil // a catch-up read these positions back from storage already
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

// publish applies committed items to the loaded rooms and users and wakes their listeners
// (the caller holds the turn). Rooms not in memory need nothing: a load reads storage.
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
		h.mu.Lock()
		r := h.rooms[p.RoomID]
		h.mu.Unlock()
		if r != nil {
			r.used.Store(time.Now().Unix())
			r.apply(p)
		}
		// Members' /sync listeners subscribe to the room key (Notifier.ListenUser).
		keys = append(keys, stream.RoomKey(p.RoomID))
		for _, e := range p.State {
			if e.Type == "m.room.member" {
				keys = append(keys, stream.UserKey(*e.StateKey))
			}
		}
	}
	if top > 0 {
		h.notifier.Advance(top, keys...)
	}
}

// Room returns the active room, loading it if needed; storage.ErrNotFound for an unknown room.
// Loading reads storage without holding up writers: the room is read as of the published
// position, then, in the publishing turn, brought up to date with what was published
// meanwhile and installed.
func (h *Hub) Room(ctx context.Context, roomID string) (*Room, error) {
	h.mu.Lock()
	if r := h.rooms[roomID]; r != nil {
		h.mu.Unlock()
		r.used.Store(time.Now().Unix())
		return r, nil
	}
	if l := h.loading[roomID]; l != nil {
		h.mu.Unlock()
		select {
		case <-l.done:
			return l.room, l.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l := &roomLoad{done: make(chan struct{})}
	h.loading[roomID] = l
	h.mu.Unlock()
	l.room, l.err = h.loadRoom(context.WithoutCancel(ctx), roomID)
	h.mu.Lock()
	delete(h.loading, roomID)
	h.mu.Unlock()
	close(l.done)
	return l.room, l.err
}

func (h *Hub) loadRoom(ctx context.Context, roomID string) (*Room, error) {
	at := h.notifier.Current()
	r, err := loadRoom(ctx, h.store, roomID, at, h.limit)
	if err != nil {
		return nil, err
	}
	if f := h.loadHook.Load(); f != nil {
		(*f)(roomID)
	}
	h.seq.acquire(nil)
	defer h.seq.release(nil)
	if cur := h.notifier.Current(); cur > at {
		batch, err := h.store.StreamRange(ctx, at, cur)
		if err != nil {
			return nil, err
		}
		h.replay(ctx, r, batch)
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
	h.seq.acquire(nil)
	defer h.seq.release(nil)
	cutoff := time.Now().Add(-idle).Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, r := range h.rooms {
		if r.used.Load() <= cutoff {
			delete(h.rooms, id)
			rooms++
		}
	}
	for id, u := range h.users {
		if u.used.Load() <= cutoff {
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
