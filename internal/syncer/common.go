// Package syncer serves everything clients read: /sync, the /events stream (the peek
// stream with room_id, and the deprecated global stream), room and global initialSync,
// /messages, /context, single events, state and members.
//
// Long-polls follow one pattern: Listen on the notifier key, read up to the notifier's
// committed position, return if anything visible came out, else wait for a wake-up, the
// deadline, the client leaving, the token being revoked or shutdown. Recent items come
// from the room's in-memory window, already encoded; storage is read only for older ones.
package syncer

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// Config holds the long-poll limits.
type Config struct {
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	MinTimeout     time.Duration
}

// Syncer serves the read side.
type Syncer struct {
	hub      *live.Hub
	store    storage.Store
	notifier *stream.Notifier
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	lazy     lazyCache
	// readHook, set by tests, runs in every long-poll between registering and reading.
	readHook atomic.Pointer[func()]
}

// SetReadHook installs f to run in every long-poll round after it registers with the
// notifier and before it reads (nil removes it). Tests use it to commit at that moment.
func (sy *Syncer) SetReadHook(f func()) {
	if f == nil {
		sy.readHook.Store(nil)
		return
	}
	sy.readHook.Store(&f)
}

// New returns a syncer.
func New(hub *live.Hub, store storage.Store, cfg Config, log *slog.Logger) *Syncer {
	return &Syncer{hub: hub, store: store, notifier: hub.Notifier(), cfg: cfg, log: log, now: time.Now}
}

// ClampTimeout applies the configured floor and ceiling to a requested timeout; zero stays
// zero (answer at once).
func (sy *Syncer) ClampTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return min(max(d, sy.cfg.MinTimeout), sy.cfg.MaxTimeout)
}

// longPoll is the pattern every long-poll follows: listen first, then read everything up to
// the committed position, and answer when the read found something (or no wait was asked
// for); otherwise wait for a wake-up and read again, until the deadline. Listening before
// reading means an item committed in between still wakes the request. Every registration
// is released when the request stops waiting on it.
func (sy *Syncer) longPoll(ctx context.Context, sess *auth.Session, timeout time.Duration,
	listen func() (stream.Listener, error), read func(cur stream.Pos) (body []byte, ready bool, err error)) ([]byte, error) {
	deadline := sy.now().Add(timeout)
	for {
		l, err := listen()
		if err != nil {
			return nil, err
		}
		cur := sy.notifier.Current()
		if h := sy.readHook.Load(); h != nil {
			(*h)()
		}
		body, ready, err := read(cur)
		if err != nil || ready || timeout == 0 {
			l.Release()
			return body, err
		}
		woken, err := sy.wait(ctx, sess, l.C(), deadline)
		l.Release()
		if err != nil {
			return nil, err
		}
		if !woken {
			return body, nil
		}
	}
}

// resolveFrom returns the position a request's token names (nil: now), as this node sees
// it. A token ahead of this node usually comes from another node that committed first:
// catch up with storage before judging it, so the client neither waits for nor is sent
// again what it already has. A token still ahead after that was never handed out; it
// counts as now, as in Synapse.
func (sy *Syncer) resolveFrom(ctx context.Context, p *stream.Pos) (stream.Pos, error) {
	cur := sy.notifier.Current()
	if p == nil {
		return cur, nil
	}
	if *p <= cur {
		return *p, nil
	}
	if err := sy.hub.CatchUpAll(ctx); err != nil {
		return 0, mxerr.Internal(err)
	}
	return min(*p, sy.notifier.Current()), nil
}

// errRevoked ends a long-poll whose token was revoked while it waited.
var errRevoked = mxerr.UnknownToken("Access token has been revoked")

// wait blocks until ch is closed (true), the deadline passes or the server shuts down
// (false), or the client leaves or its session is revoked (error).
func (sy *Syncer) wait(ctx context.Context, sess *auth.Session, ch <-chan struct{}, deadline time.Time) (bool, error) {
	d := time.Until(deadline)
	if d <= 0 {
		return false, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	sy.notifier.Parked(1)
	defer sy.notifier.Parked(-1)
	select {
	case <-ch:
		return true, nil
	case <-t.C:
		return false, nil
	case <-sy.notifier.Closing():
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-sess.Revoked():
		return false, errRevoked
	}
}

// viewer is who reads a room, and how.
type viewer struct {
	reader  clientevent.Reader
	peeking bool
	history []live.Change
	nowMS   int64
	// ignored are the senders whose non-state events the reader does not want.
	ignored map[string]struct{}
}

func (sy *Syncer) newViewer(ctx context.Context, sess *auth.Session, room *live.Room, peeking bool) (*viewer, error) {
	v := &viewer{reader: clientevent.Reader{UserID: sess.UserID, DeviceID: sess.DeviceID}, peeking: peeking, nowMS: sy.now().UnixMilli()}
	if room != nil {
		var err error
		if v.history, err = sy.hub.History(ctx, room, sess.UserID); err != nil {
			return nil, mxerr.Internal(err)
		}
	}
	return v, nil
}

// filteringViewer is newViewer for reading timelines: it also drops the non-state events
// of users the reader ignores (guests have no account data, so nobody to ignore).
func (sy *Syncer) filteringViewer(ctx context.Context, sess *auth.Session, room *live.Room, peeking bool) (*viewer, error) {
	v, err := sy.newViewer(ctx, sess, room, peeking)
	if err != nil {
		return nil, err
	}
	if !sess.IsGuest {
		var err error
		if v.ignored, err = sy.hub.Ignored(ctx, sess.UserID); err != nil {
			return nil, mxerr.Internal(err)
		}
	}
	return v, nil
}

// sees reports whether the viewer may see the event and its membership at it.
func (v *viewer) sees(e *clientevent.Encoded) (bool, string) {
	m := live.MembershipAt(v.history, e.Pos)
	if e.StateKey == nil && v.ignored != nil {
		if _, ok := v.ignored[e.Sender]; ok {
			return false, m
		}
	}
	return visibility.CanSee(e.Visibility, m, v.peeking), m
}

// appendEvent writes the event for the viewer.
func (v *viewer) appendEvent(b []byte, e *clientevent.Encoded, membership string) []byte {
	return e.Append(b, v.nowMS, visibility.ClientMembership(membership), v.reader)
}

// roomAccess is how a user may read a room's history.
type roomAccess struct {
	room       *live.Room
	membership string
	peeking    bool
	// upTo caps what a departed user reads: their leave event's position.
	upTo stream.Pos
	// departed marks a user reading a room they left (a frozen view).
	departed bool
}

// errNoAccess is the answer for rooms the user may not read, unknown rooms included.
func errNoAccess(roomID string) *mxerr.Error {
	return mxerr.Forbidden("User is not in room " + roomID + ", and room previews are disabled")
}

// access decides how sess may read roomID: joined members read everything, users who
// left read up to their leave (unless they forgot the room), and anyone (banned users
// included) may peek while the room is world-readable. Everyone else, unknown rooms included, gets 403.
func (sy *Syncer) access(ctx context.Context, sess *auth.Session, roomID string) (*roomAccess, error) {
	room, err := sy.hub.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNoAccess(roomID)
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	a := &roomAccess{room: room, membership: room.Membership(sess.UserID), upTo: sy.notifier.Current()}
	switch a.membership {
	case visibility.Join:
		return a, nil
	case visibility.Leave:
		// Only a user who left keeps a view of the past; a banned user is a stranger, as
		// in Synapse (and may still peek a world-readable room).
		m, err := sy.store.Member(ctx, roomID, sess.UserID)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		if !m.Forgotten {
			a.upTo, a.departed = m.Pos, true
			return a, nil
		}
	}
	if room.WorldReadable() {
		a.peeking = true
		return a, nil
	}
	return nil, errNoAccess(roomID)
}

// scanStored reads a room's stored events one batch at a time, from cursor towards bound
// (forward: cursor < pos <= bound; backward: bound < pos <= cursor), handing each to visit
// until visit returns false, the range ends or max events were read. It returns the token
// after the last event read (its position going forward, one before it going back) and
// whether the range is exhausted after it. Every read of history that skips events a
// reader may not see goes through here, so none of them can scan without bound.
func (sy *Syncer) scanStored(ctx context.Context, roomID string, cursor, bound stream.Pos, forward bool, batch, max int,
	visit func(*storage.Event) bool) (stream.Pos, bool, error) {
	for scanned := 0; scanned < max; {
		n := min(batch, max-scanned)
		evs, err := sy.store.RoomEvents(ctx, roomID, cursor, bound, forward, n)
		if err != nil {
			return cursor, false, mxerr.Internal(err)
		}
		scanned += len(evs)
		for i := range evs {
			if forward {
				cursor = evs[i].Pos
			} else {
				cursor = evs[i].Pos - 1
			}
			if !visit(&evs[i]) {
				return cursor, len(evs) < n && i == len(evs)-1, nil
			}
		}
		if len(evs) < n {
			return cursor, true, nil
		}
	}
	return cursor, false, nil
}

// appendJSONList writes a JSON array of already-encoded objects.
func appendJSONList(b []byte, items [][]byte) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, ']')
}
