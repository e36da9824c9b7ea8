package live

import (
	"sync"

	"porthole/internal/stream"
)

// sequencer puts publication in position order without holding one lock across every
// write. A transaction reserves its positions just before it commits (while it still holds
// the database's stream lock, so reservations arrive in position order); after the
// commit it waits for its turn: every reservation below its own published, and nobody
// else publishing. Loading a room or a user into memory also takes the turn for a moment,
// so that nothing is published between its storage read and its installation.
type sequencer struct {
	mu   sync.Mutex
	cond *sync.Cond
	// reserved are the first positions of committed or committing, unpublished local
	// batches.
	reserved map[*reservation]struct{}
	busy     bool // someone holds the turn
}

type reservation struct {
	first, last stream.Pos
}

func newSequencer() *sequencer {
	s := &sequencer{reserved: make(map[*reservation]struct{})}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// reserve records a batch about to commit.
func (s *sequencer) reserve(first, last stream.Pos) *reservation {
	r := &reservation{first: first, last: last}
	s.mu.Lock()
	s.reserved[r] = struct{}{}
	s.mu.Unlock()
	return r
}

// cancel drops a reservation whose transaction did not commit.
func (s *sequencer) cancel(r *reservation) {
	if r == nil {
		return
	}
	s.mu.Lock()
	delete(s.reserved, r)
	s.mu.Unlock()
	s.cond.Broadcast()
}

// lowestBelow reports whether another reservation starts before pos.
func (s *sequencer) pendingBelow(pos stream.Pos, self *reservation) bool {
	for r := range s.reserved {
		if r != self && r.first < pos {
			return true
		}
	}
	return false
}

// acquire waits for the turn to publish r (nil: a load or a catch-up, which waits only
// for the turn itself).
func (s *sequencer) acquire(r *reservation) {
	s.mu.Lock()
	for s.busy || (r != nil && s.pendingBelow(r.first, r)) {
		s.cond.Wait()
	}
	s.busy = true
	s.mu.Unlock()
}

// release gives the turn back, r (if any) being published.
func (s *sequencer) release(r *reservation) {
	s.mu.Lock()
	if r != nil {
		delete(s.reserved, r)
	}
	s.busy = false
	s.mu.Unlock()
	s.cond.Broadcast()
}

// firstReserved is the lowest reserved position, or 0 when nothing is reserved.
func (s *sequencer) firstReserved() stream.Pos {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first stream.Pos
	for r := range s.reserved {
		if first == 0 || r.first < first {
			first = r.first
		}
	}
	return first
}
