package live

import (
	"context"
	"sort"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

// notifyCap bounds how many push outcomes a room remembers for unread counts; users
// further behind are counted from storage.
const notifyCap = 10000

// MainThread is the receipt thread_id of the main timeline (threads are "" here).
const MainThread = "main"

// series holds running totals over events in position order, so "how many after P" is a
// binary search: total minus the running total at P.
type series struct {
	pos  []stream.Pos
	n, h []int32 // running totals of notifications and highlights, including pos[i]
}

func (s *series) add(p stream.Pos, dn, dh int32) {
	var n, h int32
	if k := len(s.pos); k > 0 {
		n, h = s.n[k-1], s.h[k-1]
	}
	s.pos = append(s.pos, p)
	s.n = append(s.n, n+dn)
	s.h = append(s.h, h+dh)
}

// upTo is the running total of entries with pos <= p.
func (s *series) upTo(p stream.Pos) (int32, int32) {
	i := sort.Search(len(s.pos), func(i int) bool { return s.pos[i] > p }) - 1
	if i < 0 {
		return 0, 0
	}
	return s.n[i], s.h[i]
}

// between counts entries with a < pos <= b.
func (s *series) between(a, b stream.Pos) (int, int) {
	if b <= a || len(s.pos) == 0 {
		return 0, 0
	}
	n1, h1 := s.upTo(a)
	n2, h2 := s.upTo(b)
	return int(n2 - n1), int(h2 - h1)
}

func (s *series) after(a stream.Pos) (int, int) {
	if len(s.pos) == 0 {
		return 0, 0
	}
	return s.between(a, s.pos[len(s.pos)-1])
}

// fix subtracts an entry's contribution at p from every running total from p on (a
// redaction: rare, so linear).
func (s *series) fix(p stream.Pos, dn, dh int32) {
	i := sort.Search(len(s.pos), func(i int) bool { return s.pos[i] >= p })
	for ; i < len(s.pos); i++ {
		s.n[i] -= dn
		s.h[i] -= dh
	}
}

// trim drops entries with pos <= p (totals stay differences of running totals).
func (s *series) trim(p stream.Pos) {
	i := sort.Search(len(s.pos), func(i int) bool { return s.pos[i] > p })
	s.pos = append([]stream.Pos(nil), s.pos[i:]...)
	s.n = append([]int32(nil), s.n[i:]...)
	s.h = append([]int32(nil), s.h[i:]...)
}

// threaded is a series for all threads together and one per thread ("" the main timeline).
type threaded struct {
	all     series
	threads map[string]*series
}

func (t *threaded) add(p stream.Pos, thread string, dn, dh int32) {
	t.all.add(p, dn, dh)
	s := t.threads[thread]
	if s == nil {
		if t.threads == nil {
			t.threads = map[string]*series{}
		}
		s = &series{}
		t.threads[thread] = s
	}
	s.add(p, dn, dh)
}

func (t *threaded) fix(p stream.Pos, thread string, dn, dh int32) {
	t.all.fix(p, dn, dh)
	if s := t.threads[thread]; s != nil {
		s.fix(p, dn, dh)
	}
}

func (t *threaded) trim(p stream.Pos) {
	t.all.trim(p)
	for k, s := range t.threads {
		s.trim(p)
		if len(s.pos) == 0 {
			delete(t.threads, k)
		}
	}
}

func (t *threaded) thread(id string) *series {
	if s := t.threads[id]; s != nil {
		return s
	}
	return &series{}
}

// readState is a user's read receipts (m.read and m.read.private, the furthest of both).
type readState struct {
	unthreaded stream.Pos
	threads    map[string]stream.Pos // "" for the main timeline
}

// unreadIndex answers "how many notifications, and highlights, does this user have in
// this room" from memory. Each event's push outcome adds to the base series (what most
// members got); members whose outcome differed (the sender, a mention, a muted room) get
// a correction in their own series. A count is then two binary searches, whatever the
// room's size and however far behind the user is.
type unreadIndex struct {
	base     threaded
	users    map[string]*threaded
	outcomes map[stream.Pos]*storage.PushOutcome
	// covered: every outcome with pos > covered is here (-1: the room's whole history).
	covered stream.Pos
	reads   map[string]*readState
}

func newUnreadIndex() *unreadIndex {
	return &unreadIndex{users: map[string]*threaded{}, outcomes: map[stream.Pos]*storage.PushOutcome{}, covered: -1, reads: map[string]*readState{}}
}

func counted(a storage.PushActions) (int32, int32) {
	if !a.Notify {
		return 0, 0
	}
	if a.Highlight {
		return 1, 1
	}
	return 1, 0
}

// outcomeDeltas walks an outcome's corrections to the base.
// each calls fn for every member whose counts differ from the base.
func (o outcomeDeltas) each(fn func(user string, dn, dh int32)) {
	bn, bh := counted(o.Base)
	sawSender := false
	for _, x := range o.Exceptions {
		if x.UserID == o.Sender {
			sawSender = true
		}
		xn, xh := counted(x.PushActions)
		if x.UserID == o.Sender {
			xn, xh = 0, 0
		}
		if xn != bn || xh != bh {
			fn(x.UserID, xn-bn, xh-bh)
		}
	}
	if !sawSender && (bn != 0 || bh != 0) {
		fn(o.Sender, -bn, -bh)
	}
}

type outcomeDeltas struct{ *storage.PushOutcome }

func (u *unreadIndex) add(o *storage.PushOutcome) {
	if _, dup := u.outcomes[o.Pos]; dup {
		return
	}
	bn, bh := counted(o.Base)
	u.base.add(o.Pos, o.ThreadID, bn, bh)
	outcomeDeltas{o}.each(func(user string, dn, dh int32) {
		t := u.users[user]
		if t == nil {
			t = &threaded{}
			u.users[user] = t
		}
		t.add(o.Pos, o.ThreadID, dn, dh)
	})
	u.outcomes[o.Pos] = o
	if len(u.outcomes) > notifyCap {
		u.trimOldest(len(u.outcomes) - notifyCap/2)
	}
}

// trimOldest forgets the oldest n outcomes; users behind them are counted from storage.
func (u *unreadIndex) trimOldest(n int) {
	ps := u.base.all.pos
	if n <= 0 || len(ps) == 0 {
		return
	}
	cut := ps[min(n, len(ps))-1]
	u.base.trim(cut)
	for user, t := range u.users {
		t.trim(cut)
		if len(t.all.pos) == 0 {
			delete(u.users, user)
		}
	}
	for p := range u.outcomes {
		if p <= cut {
			delete(u.outcomes, p)
		}
	}
	u.covered = max(u.covered, cut)
}

// redact removes a redacted event's notifications.
func (u *unreadIndex) redact(pos stream.Pos) {
	o := u.outcomes[pos]
	if o == nil {
		return
	}
	delete(u.outcomes, pos)
	bn, bh := counted(o.Base)
	u.base.fix(pos, o.ThreadID, bn, bh)
	outcomeDeltas{o}.each(func(user string, dn, dh int32) {
		if t := u.users[user]; t != nil {
			t.fix(pos, o.ThreadID, dn, dh)
		}
	})
}

// read records a receipt on the event at upTo; receipts only move forward.
func (u *unreadIndex) read(user, thread string, upTo stream.Pos) {
	rs := u.reads[user]
	if rs == nil {
		rs = &readState{}
		u.reads[user] = rs
	}
	if thread == "" {
		rs.unthreaded = max(rs.unthreaded, upTo)
		return
	}
	if thread == MainThread {
		thread = ""
	}
	if rs.threads == nil {
		rs.threads = map[string]stream.Pos{}
	}
	rs.threads[thread] = max(rs.threads[thread], upTo)
}

// loadUnread fills a room's unread index from storage as of cur.
func loadUnread(ctx context.Context, st storage.Reader, roomID string, cur stream.Pos) (*unreadIndex, error) {
	u := newUnreadIndex()
	outs, err := st.PushOutcomes(ctx, roomID, -1, cur, notifyCap)
	if err != nil {
		return nil, err
	}
	if len(outs) == notifyCap {
		u.covered = outs[len(outs)-1].Pos - 1
	}
	for i := len(outs) - 1; i >= 0; i-- {
		u.add(&outs[i])
	}
	rs, err := st.Receipts(ctx, roomID, -1, cur)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.Type == "m.read" || r.Type == "m.read.private" {
			u.read(r.UserID, r.ThreadID, r.EventPos)
		}
	}
	return u, nil
}

// Counts are unread notifications and highlights.
type Counts struct {
	Notify, Highlight int
}

func (c *Counts) plus(n, h int) { c.Notify += n; c.Highlight += h }

// ReadPoints is where a user's unread counts start in a room: Since for every thread
// (their join or unthreaded receipt), and later for threads with their own receipt.
type ReadPoints struct {
	Since   stream.Pos
	Threads map[string]stream.Pos // thread ("" main) → read up to, only those after Since
}

// After is where counting starts for a thread.
func (rp ReadPoints) After(thread string) stream.Pos {
	if p, ok := rp.Threads[thread]; ok {
		return p
	}
	return rp.Since
}

// joinedSince is where the user's current stretch of being joined began (0: not joined).
func joinedSince(history []Change) stream.Pos {
	i := len(history) - 1
	if i < 0 || history[i].Membership != "join" {
		return 0
	}
	for i > 0 && history[i].Prev == "join" && history[i-1].Membership == "join" {
		i--
	}
	return history[i].Pos
}

// ReadPoints returns the user's read points in the room.
func (r *Room) ReadPoints(userID string) ReadPoints {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.readPointsLocked(userID)
}

func (r *Room) readPointsLocked(userID string) ReadPoints {
	rp := ReadPoints{Since: joinedSince(r.members[userID])}
	if rp.Since == 0 {
		return rp // not joined: nothing counts
	}
	if rs := r.unread.reads[userID]; rs != nil {
		rp.Since = max(rp.Since, rs.unthreaded)
		for t, p := range rs.threads {
			if p > rp.Since {
				if rp.Threads == nil {
					rp.Threads = map[string]stream.Pos{}
				}
				rp.Threads[t] = p
			}
		}
	}
	return rp
}

// Unread is a user's unread counts in a room: in total, and per thread ("" the main
// timeline) when asked for.
type Unread struct {
	Total   Counts
	Threads map[string]Counts
}

// Unread counts the user's unread notifications in the room from memory. false means the
// room does not remember that far back: the caller counts in storage from ReadPoints.
func (r *Room) Unread(userID string, byThread bool) (Unread, ReadPoints, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rp := r.readPointsLocked(userID)
	var out Unread
	if rp.Since == 0 {
		return out, rp, true // not joined
	}
	u := r.unread
	if rp.Since < u.covered {
		return out, rp, false
	}
	own := u.users[userID]
	if own == nil {
		own = &threaded{}
	}
	count := func(thread string, a, b stream.Pos, all bool) (int, int) {
		var bs, us *series
		if all {
			bs, us = &u.base.all, &own.all
		} else {
			bs, us = u.base.thread(thread), own.thread(thread)
		}
		var n, h int
		if b < 0 {
			n, h = bs.after(a)
			n2, h2 := us.after(a)
			n, h = n+n2, h+h2
		} else {
			n, h = bs.between(a, b)
			n2, h2 := us.between(a, b)
			n, h = n+n2, h+h2
		}
		return max(n, 0), max(h, 0)
	}
	out.Total.plus(count("", rp.Since, -1, true))
	// Threads read further than Since: take off what was read in them.
	for t, p := range rp.Threads {
		n, h := count(t, rp.Since, p, false)
		out.Total.plus(-n, -h)
	}
	out.Total.Notify, out.Total.Highlight = max(out.Total.Notify, 0), max(out.Total.Highlight, 0)
	if byThread {
		out.Threads = map[string]Counts{}
		for t := range u.base.threads {
			n, h := count(t, rp.After(t), -1, false)
			if n > 0 || h > 0 {
				out.Threads[t] = Counts{n, h}
			}
		}
		for t := range own.threads {
			if _, done := out.Threads[t]; done || u.base.threads[t] != nil {
				continue
			}
			if n, h := count(t, rp.After(t), -1, false); n > 0 || h > 0 {
				out.Threads[t] = Counts{n, h}
			}
		}
	}
	return out, rp, true
}

// UnreadFromStorage counts like Unread, in storage, for users the room's memory does not
// reach.
func UnreadFromStorage(ctx context.Context, st storage.Reader, roomID, userID string, rp ReadPoints, byThread bool) (Unread, error) {
	first, err := st.PushCounts(ctx, roomID, userID, rp.Since)
	if err != nil {
		return Unread{}, err
	}
	per := map[string]Counts{}
	for _, c := range first {
		per[c.ThreadID] = Counts{c.Notify, c.Highlight}
	}
	for t, p := range rp.Threads {
		again, err := st.PushCounts(ctx, roomID, userID, p)
		if err != nil {
			return Unread{}, err
		}
		delete(per, t)
		for _, c := range again {
			if c.ThreadID == t {
				per[t] = Counts{c.Notify, c.Highlight}
			}
		}
	}
	var out Unread
	for _, c := range per {
		out.Total.plus(c.Notify, c.Highlight)
	}
	if byThread {
		out.Threads = map[string]Counts{}
		for t, c := range per {
			if c.Notify > 0 || c.Highlight > 0 {
				out.Threads[t] = c
			}
		}
	}
	return out, nil
}
