package stream

import (
	"sync"
	"sync/atomic"
)

// Key names what a long-poll waits on: one room (peekers and room streams) or one user
// (/sync and the global /events stream).
type Key struct {
	room bool
	id   string
}

// RoomKey is the key woken by anything new in a room.
func RoomKey(roomID string) Key { return Key{room: true, id: roomID} }

// UserKey is the key woken by anything new for a user.
func UserKey(userID string) Key { return Key{id: userID} }

// Notifier hands out positions, never data. A long-poll calls Listen before it reads, so
// an advance that lands between the read and the wait still wakes it (the channel it holds
// is already closed). Waking a key closes one channel, however many requests wait on it.
// Keys nobody listens to hold nothing.
type Notifier struct {
	current atomic.Int64

	mu   sync.Mutex
	keys map[Key]chan struct{}

	closing   chan struct{}
	closeOnce sync.Once
	waiting   atomic.Int64
	wakeups   atomic.Int64
	keysWoken atomic.Int64
	onPark    atomic.Pointer[func(waiting int64)]
}

// NewNotifier starts at the committed position cur.
func NewNotifier(cur Pos) *Notifier {
	n := &Notifier{keys: make(map[Key]chan struct{}), closing: make(chan struct{})}
	n.current.Store(int64(cur))
	return n
}

// Current is the highest committed position: everything at or below it may be read.
func (n *Notifier) Current() Pos { return Pos(n.current.Load()) }

// Listen returns a channel closed at the next wake of key (or at shutdown).
func (n *Notifier) Listen(key Key) <-chan struct{} {
	n.mu.Lock()
	ch, ok := n.keys[key]
	if !ok {
		ch = make(chan struct{})
		n.keys[key] = ch
	}
	n.mu.Unlock()
	return ch
}

// Advance publishes pos as committed and wakes keys. Positions never move backwards.
func (n *Notifier) Advance(pos Pos, keys ...Key) {
	for {
		cur := n.current.Load()
		if int64(pos) <= cur || n.current.CompareAndSwap(cur, int64(pos)) {
			break
		}
	}
	n.Wake(keys...)
}

// Wake closes the channels of keys without moving the position (used when something a
// listener filters on changed, such as a room ceasing to be world-readable).
func (n *Notifier) Wake(keys ...Key) {
	if len(keys) == 0 {
		return
	}
	n.mu.Lock()
	for _, k := range keys {
		if ch, ok := n.keys[k]; ok {
			close(ch)
			delete(n.keys, k)
			n.keysWoken.Add(1)
		}
	}
	n.mu.Unlock()
	n.wakeups.Add(1)
}

// Closing is closed when the server shuts down: long-polls answer at once.
func (n *Notifier) Closing() <-chan struct{} { return n.closing }

// Shutdown wakes every long-poll for good.
func (n *Notifier) Shutdown() { n.closeOnce.Do(func() { close(n.closing) }) }

// Parked counts a request entering (+1) or leaving (-1) a long-poll wait.
func (n *Notifier) Parked(delta int64) {
	w := n.waiting.Add(delta)
	if f := n.onPark.Load(); f != nil {
		(*f)(w)
	}
}

// ObservePark installs a function called with the waiting count at every park and unpark
// (tests use it to know a long-poll is waiting, without sleeping).
func (n *Notifier) ObservePark(f func(waiting int64)) { n.onPark.Store(&f) }

// Stats for metrics.
func (n *Notifier) Waiting() int64    { return n.waiting.Load() }
func (n *Notifier) Wakeups() int64    { return n.wakeups.Load() }
func (n *Notifier) KeysWoken() int64  { return n.keysWoken.Load() }
func (n *Notifier) ListenedKeys() int { n.mu.Lock(); defer n.mu.Unlock(); return len(n.keys) }
