package stream

import (
	"hash/maphash"
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
// A listener that stops waiting without being woken (a timeout, a client gone) releases
// its key, so keys nobody listens to any more hold nothing.
type Notifier struct {
	current atomic.Int64

	// Keys are spread over shards so thousands of long-polls do not queue on one lock.
	shards [64]notifierShard
	seed   maphash.Seed

	closing   chan struct{}
	closeOnce sync.Once
	waiting   atomic.Int64
	wakeups   atomic.Int64
	keysWoken atomic.Int64
	onPark    atomic.Pointer[func(waiting int64)]
}

type notifierShard struct {
	mu   sync.Mutex
	keys map[Key]*listening
	// subs lists, per room of this shard, the users whose listener wants that room's news,
	// with the channel of the listener generation that asked: waking a room wakes them
	// (if that generation still listens), and costs nothing for members nobody is syncing.
	subs map[string]map[string]chan struct{}
}

// listening is one key's current channel and how many requests hold it.
type listening struct {
	ch chan struct{}
	n  int
}

// Listener is a registration returned by Listen: its channel is closed at the next wake
// of the key. Release it when it is no longer waited on.
type Listener struct {
	n     *Notifier
	key   Key
	ch    chan struct{}
	rooms []string
}

// C is closed when the key is woken (or at shutdown, through Closing).
func (l Listener) C() <-chan struct{} { return l.ch }

// NewNotifier starts at the committed position cur.
func NewNotifier(cur Pos) *Notifier {
	n := &Notifier{closing: make(chan struct{}), seed: maphash.MakeSeed()}
	for i := range n.shards {
		n.shards[i].keys = make(map[Key]*listening)
		n.shards[i].subs = make(map[string]map[string]chan struct{})
	}
	n.current.Store(int64(cur))
	return n
}

func (n *Notifier) shard(k Key) *notifierShard {
	return &n.shards[maphash.String(n.seed, k.id)%uint64(len(n.shards))]
}

// Current is the highest committed position: everything at or below it may be read.
func (n *Notifier) Current() Pos { return Pos(n.current.Load()) }

// Listen registers for the next wake of key.
func (n *Notifier) Listen(key Key) Listener {
	sh := n.shard(key)
	sh.mu.Lock()
	l, ok := sh.keys[key]
	if !ok {
		l = &listening{ch: make(chan struct{})}
		sh.keys[key] = l
	}
	l.n++
	ch := l.ch
	sh.mu.Unlock()
	return Listener{n: n, key: key, ch: ch}
}

// ListenUser is Listen for a user's /sync (or global /events) that also wants to be woken by
// anything in rooms. Waking one of those rooms wakes the user once; the listener registers
// again on its next loop.
func (n *Notifier) ListenUser(userID string, rooms []string) Listener {
	l := n.Listen(UserKey(userID))
	l.rooms = rooms
	for _, r := range rooms {
		sh := n.shard(RoomKey(r))
		sh.mu.Lock()
		m := sh.subs[r]
		if m == nil {
			m = make(map[string]chan struct{})
			sh.subs[r] = m
		}
		m[userID] = l.ch
		sh.mu.Unlock()
	}
	return l
}

// Release ends a registration that is no longer waited on. Releasing a listener whose key
// was woken, or releasing twice, does nothing.
func (l *Listener) Release() {
	if l.ch == nil {
		return
	}
	n, ch := l.n, l.ch
	l.ch = nil
	sh := n.shard(l.key)
	sh.mu.Lock()
	done := true // this generation was woken, or this was its last request
	if cur, ok := sh.keys[l.key]; ok && cur.ch == ch {
		if cur.n--; cur.n <= 0 {
			delete(sh.keys, l.key)
		} else {
			done = false
		}
	}
	sh.mu.Unlock()
	if !done {
		return
	}
	// Nobody waits on this generation any more: its room subscriptions go with it.
	for _, r := range l.rooms {
		rsh := n.shard(RoomKey(r))
		rsh.mu.Lock()
		if m := rsh.subs[r]; m != nil && m[l.key.id] == ch {
			delete(m, l.key.id)
			if len(m) == 0 {
				delete(rsh.subs, r)
			}
		}
		rsh.mu.Unlock()
	}
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
	woken := int64(0)
	type sub struct {
		user string
		ch   chan struct{}
	}
	var users []sub
	for _, k := range keys {
		sh := n.shard(k)
		sh.mu.Lock()
		if l, ok := sh.keys[k]; ok {
			close(l.ch)
			delete(sh.keys, k)
			woken++
		}
		if k.room {
			for u, ch := range sh.subs[k.id] {
				users = append(users, sub{u, ch})
			}
			delete(sh.subs, k.id)
		}
		sh.mu.Unlock()
	}
	for _, u := range users {
		k := UserKey(u.user)
		sh := n.shard(k)
		sh.mu.Lock()
		// Only the generation that subscribed: a newer listener registered its own rooms.
		if l, ok := sh.keys[k]; ok && l.ch == u.ch {
			close(l.ch)
			delete(sh.keys, k)
			woken++
		}
		sh.mu.Unlock()
	}
	n.keysWoken.Add(woken)
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
func (n *Notifier) Waiting() int64   { return n.waiting.Load() }
func (n *Notifier) Wakeups() int64   { return n.wakeups.Load() }
func (n *Notifier) KeysWoken() int64 { return n.keysWoken.Load() }

// ListenedKeys is the number of keys with listeners.
func (n *Notifier) ListenedKeys() int {
	total := 0
	for i := range n.shards {
		n.shards[i].mu.Lock()
		total += len(n.shards[i].keys)
		n.shards[i].mu.Unlock()
	}
	return total
}

// Subscriptions is the number of (room, user) subscriptions held for /sync listeners.
func (n *Notifier) Subscriptions() int {
	total := 0
	for i := range n.shards {
		n.shards[i].mu.Lock()
		for _, m := range n.shards[i].subs {
			total += len(m)
		}
		n.shards[i].mu.Unlock()
	}
	return total
}
