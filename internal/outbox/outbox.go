// Package outbox is Porthole's one durable outgoing queue: "deliver these items to that
// destination, in order, at least once, surviving restarts, backing off when it fails".
// Push gateways, application-service transactions and federation transactions use it
// (shared/DESIGN.md, "One outbox").
//
// # Model
//
// An item is an opaque payload for a destination of a kind ("push" + a pusher ID,
// "federation" + a server name). Items are database rows (storage.OutboxWriter), enqueued
// with Enqueue inside the caller's own transaction, so an item exists exactly when the
// write that caused it committed: an acknowledged event's pushes survive SIGKILL.
//
// Each kind registers a Deliver callback. For one destination the outbox hands it batches
// in queue order (Batch chooses how many of the first pending items make one delivery, so
// federation can stop at 50 PDUs and 100 EDUs), one delivery at a time, and acts on the
// Outcome:
//   - Delivered: the batch is removed and the destination's backoff reset;
//   - Drop: the batch is removed as undeliverable (logged), the backoff reset too, since
//     the destination did answer;
//   - RetryLater: the batch stays, and the destination is not tried again before an
//     exponential backoff (MinBackoff doubling up to MaxBackoff, with jitter) has passed;
//     the next attempt gets the same batch, plus whatever was queued behind it if Batch
//     takes more.
//
// A kind with KeepBatch (application services: a transaction ID must always carry the
// same events) has each batch recorded before its first attempt (storage's batch end), so
// every retry, by this node after a failure or by another after a crash, sends exactly
// the same items again.
//
// # One sender per destination
//
// Before delivering, a node takes the destination's lease (a row with an owner and an
// expiry, renewed while a delivery runs), so on a cluster of nodes sharing one PostgreSQL
// database exactly one node delivers to a destination at a time; a node that dies loses
// its leases when they expire. Within a process one goroutine works a destination. The
// enqueuing node wakes its own sender after commit; a node that finds a destination leased
// leaves it to the holder, which looks for more items after releasing the lease, so no item
// waits for the periodic scan that also runs (at start, every ScanInterval, and when a
// backoff ends). SQLite is one process: its leases are cleared at start.
//
// # Catch-up after a backoff
//
// Kind.Compact is the hook for replacing a backlog rather than sending every missed item:
// when a destination comes back after failures, Compact sees its backlog (up to
// CompactReadAhead items) and names the items to drop before delivery resumes. Federation
// uses it to send a room's latest events instead of every event it missed; pushes do not
// need it. RetryNow ends a backoff early (a federation destination that sent us a request
// is back).
package outbox

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"porthole/internal/storage"
)

// Outcome is what a delivery attempt achieved.
type Outcome int

const (
	// Delivered: the destination took the batch.
	Delivered Outcome = iota
	// RetryLater: keep the batch and try again after the destination's backoff.
	RetryLater
	// Drop: the batch can never be delivered; remove it.
	Drop
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case RetryLater:
		return "retry later"
	case Drop:
		return "dropped"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Item is one queued payload as Deliver sees it.
type Item struct {
	Seq      int64
	Payload  []byte
	Enqueued time.Time
}

// Kind is one kind of destination and how to deliver to it.
type Kind struct {
	Name string
	// Deliver sends batch (in queue order) to dest. It must honour ctx, which ends at the
	// kind's Timeout or when the outbox stops.
	Deliver func(ctx context.Context, dest string, batch []Item) (Outcome, error)
	// Batch returns how many of the first pending items (at least 1) form one delivery; nil
	// means one item per delivery.
	Batch func(pending []Item) int
	// ReadAhead is how many pending items are read for Batch and Compact (default 100).
	ReadAhead int
	// Compact, if set, is called when a destination is tried again after failures, with its
	// backlog; it returns the Seq of items to drop before delivery resumes.
	Compact func(ctx context.Context, dest string, backlog []Item) []int64
	// CompactReadAhead is how many pending items Compact sees (default ReadAhead).
	CompactReadAhead int
	// KeepBatch makes every attempt of a batch carry the same items: the batch is recorded
	// before its first attempt, and retries take exactly the items recorded.
	KeepBatch bool
	// QuietRetries logs failed deliveries at debug level only: the kind logs its
	// destinations' state changes itself.
	QuietRetries bool
	// Timeout bounds one delivery (default 30 s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait after failures (default 1 s and 1 h).
	MinBackoff, MaxBackoff time.Duration
}

// Options tune an Outbox.
type Options struct {
	// Workers is how many destinations are delivered to at once (default 32).
	Workers int
	// Lease is how long a destination's lease lasts unless renewed (default 30 s).
	Lease time.Duration
	// ScanInterval is how often storage is searched for due destinations (default 15 s).
	ScanInterval time.Duration
	Log          *slog.Logger
}

// Message is one item to enqueue.
type Message struct {
	Kind        string
	Destination string
	Payload     []byte
}

type key struct{ kind, dest string }

// Outbox delivers queued items in the background.
type Outbox struct {
	store storage.Store
	kinds map[string]*Kind
	owner string
	opts  Options
	log   *slog.Logger

	mu     sync.Mutex
	active map[key]bool // destinations with a worker; true when woken again meanwhile
	queued map[key]struct{}
	timers map[key]*time.Timer
	wakeCh chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	delivered, failed, dropped atomic.Int64
}

// New returns an outbox for the given kinds; Start begins delivering.
func New(store storage.Store, opts Options, kinds ...Kind) *Outbox {
	if opts.Workers <= 0 {
		opts.Workers = 32
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.ScanInterval <= 0 {
		opts.ScanInterval = 15 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	var id [8]byte
	crand.Read(id[:])
	o := &Outbox{store: store, kinds: map[string]*Kind{}, owner: hex.EncodeToString(id[:]), opts: opts, log: opts.Log,
		active: map[key]bool{}, queued: map[key]struct{}{}, timers: map[key]*time.Timer{}, wakeCh: make(chan struct{}, 1)}
	for i := range kinds {
		k := kinds[i]
		if k.ReadAhead <= 0 {
			k.ReadAhead = 100
		}
		k.CompactReadAhead = max(k.CompactReadAhead, k.ReadAhead)
		if k.Timeout <= 0 {
			k.Timeout = 30 * time.Second
		}
		if k.MinBackoff <= 0 {
			k.MinBackoff = time.Second
		}
		if k.MaxBackoff < k.MinBackoff {
			k.MaxBackoff = max(time.Hour, k.MinBackoff)
		}
		o.kinds[k.Name] = &k
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	return o
}

// Owner is the name this outbox holds leases under.
func (o *Outbox) Owner() string { return o.owner }

// Counts returns how many deliveries succeeded, failed (to be retried) and were dropped.
func (o *Outbox) Counts() (delivered, failed, dropped int64) {
	return o.delivered.Load(), o.failed.Load(), o.dropped.Load()
}

// Start begins delivering in the background: what is already queued (after a restart),
// and from then on what Enqueue adds.
func (o *Outbox) Start() error {
	if !o.store.Shared() {
		// One process owns a SQLite database: leases left by a killed process are void.
		if err := o.store.Write(o.ctx, func(tx storage.Tx) error { return tx.OutboxClearLeases(o.ctx) }); err != nil {
			return fmt.Errorf("outbox: clearing leases: %w", err)
		}
	}
	o.wg.Add(1)
	go o.run()
	return nil
}

// Close stops delivering and waits for deliveries in progress to end (their contexts are
// cancelled); what is still queued stays queued.
func (o *Outbox) Close() {
	o.cancel()
	o.mu.Lock()
	for k, t := range o.timers {
		t.Stop()
		delete(o.timers, k)
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// Enqueue adds messages to their destinations' queues inside tx; their senders are woken
// once tx commits. Messages for one destination keep their order. Destinations are locked
// in a fixed order, so concurrent writers cannot deadlock on them.
func (o *Outbox) Enqueue(ctx context.Context, tx storage.Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	sorted := slices.Clone(msgs)
	slices.SortStableFunc(sorted, func(a, b Message) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Destination, b.Destination)
	})
	now := time.Now().UnixMilli()
	keys := make([]key, 0, len(sorted))
	for _, m := range sorted {
		if o.kinds[m.Kind] == nil {
			return fmt.Errorf("outbox: unknown kind %q", m.Kind)
		}
		if err := tx.OutboxEnqueue(ctx, m.Kind, m.Destination, m.Payload, now); err != nil {
			return fmt.Errorf("outbox: enqueueing for %s %s: %w", m.Kind, m.Destination, err)
		}
		if k := (key{m.Kind, m.Destination}); len(keys) == 0 || keys[len(keys)-1] != k {
			keys = append(keys, k)
		}
	}
	tx.AfterCommit(func() { o.wake(keys...) })
	return nil
}

// Purge deletes a destination and its queue inside tx (a pusher removed, say).
func (o *Outbox) Purge(ctx context.Context, tx storage.Tx, kind, dest string) error {
	return tx.OutboxPurge(ctx, kind, dest)
}

// Wake asks for a destination to be tried now (if its backoff allows).
func (o *Outbox) Wake(kind, dest string) { o.wake(key{kind, dest}) }

// RetryNow ends a destination's backoff and tries it now: it has shown it is back (a
// server that sends us a request). Its failures are kept, so Compact still runs first.
func (o *Outbox) RetryNow(ctx context.Context, kind, dest string) error {
	var backingOff bool
	err := o.store.Write(ctx, func(tx storage.Tx) error {
		var err error
		backingOff, err = tx.OutboxRetryNow(ctx, kind, dest, time.Now().UnixMilli())
		return err
	})
	if err != nil || !backingOff {
		return err
	}
	k := key{kind, dest}
	o.mu.Lock()
	if t := o.timers[k]; t != nil {
		t.Stop()
		delete(o.timers, k)
	}
	o.mu.Unlock()
	o.wake(k)
	return nil
}

func (o *Outbox) wake(keys ...key) {
	o.mu.Lock()
	for _, k := range keys {
		if _, ok := o.active[k]; ok {
			o.active[k] = true
		} else {
			o.queued[k] = struct{}{}
		}
	}
	o.mu.Unlock()
	select {
	case o.wakeCh <- struct{}{}:
	default:
	}
}

func (o *Outbox) run() {
	defer o.wg.Done()
	scan := time.NewTimer(0)
	defer scan.Stop()
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-o.wakeCh:
		case <-scan.C:
			scan.Reset(o.scan())
		}
		o.dispatch()
	}
}

// scan queues the due destinations found in storage and returns when to scan next.
func (o *Outbox) scan() time.Duration {
	ctx, cancel := context.WithTimeout(o.ctx, 10*time.Second)
	defer cancel()
	now := time.Now().UnixMilli()
	limit := o.opts.Workers * 4
	due, err := o.store.OutboxDue(ctx, now, limit)
	if err != nil {
		if o.ctx.Err() == nil {
			o.log.Error("outbox: looking for due destinations", "err", err)
		}
		return o.opts.ScanInterval
	}
	keys := make([]key, 0, len(due))
	for _, d := range due {
		if o.kinds[d.Kind] != nil {
			keys = append(keys, key{d.Kind, d.Destination})
		}
	}
	if len(keys) > 0 {
		o.wake(keys...)
	}
	if len(due) == limit {
		return time.Second // more are due than one scan takes
	}
	next, err := o.store.OutboxNextRetry(ctx, now)
	if err != nil || next == 0 {
		return o.opts.ScanInterval
	}
	return min(max(time.Duration(next-now)*time.Millisecond, 10*time.Millisecond), o.opts.ScanInterval)
}

// dispatch starts workers for woken destinations while there are free workers.
func (o *Outbox) dispatch() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.queued {
		if len(o.active) >= o.opts.Workers || o.ctx.Err() != nil {
			return
		}
		delete(o.queued, k)
		if _, busy := o.active[k]; busy {
			o.active[k] = true
			continue
		}
		o.active[k] = false
		o.wg.Add(1)
		go o.work(k)
	}
}

func (o *Outbox) work(k key) {
	defer o.wg.Done()
	defer func() {
		o.mu.Lock()
		again := o.active[k]
		delete(o.active, k)
		if again && o.ctx.Err() == nil {
			o.queued[k] = struct{}{}
		}
		o.mu.Unlock()
		select {
		case o.wakeCh <- struct{}{}:
		default:
		}
	}()
	if err := o.deliverAll(k); err != nil && o.ctx.Err() == nil {
		o.log.Error("outbox: delivery loop", "kind", k.kind, "destination", k.dest, "err", err)
	}
}

// dbCtx bounds one bookkeeping step; it outlives Close so that a stopping outbox still
// records what its last deliveries did.
func dbCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func (o *Outbox) write(fn func(ctx context.Context, tx storage.Tx) (bool, error)) (bool, error) {
	ctx, cancel := dbCtx()
	defer cancel()
	var ok bool
	err := o.store.Write(ctx, func(tx storage.Tx) error {
		var err error
		ok, err = fn(ctx, tx)
		return err
	})
	return ok, err
}

func (o *Outbox) lease(k key) (bool, error) {
	now := time.Now()
	return o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
		return tx.OutboxLease(ctx, k.kind, k.dest, o.owner, now.UnixMilli(), now.Add(o.opts.Lease).UnixMilli())
	})
}

// deliverAll works one destination while this outbox holds its lease and items remain.
func (o *Outbox) deliverAll(k key) error {
	kind := o.kinds[k.kind]
	if kind == nil {
		return nil
	}
	if ok, err := o.lease(k); err != nil || !ok {
		return err // leased elsewhere, backing off, or purged
	}
	ctx, cancel := dbCtx()
	state, err := o.store.OutboxDestination(ctx, k.kind, k.dest)
	cancel()
	if err != nil {
		return err
	}
	failures := state.Failures
	for {
		readAhead := kind.ReadAhead
		if failures > 0 && kind.Compact != nil {
			readAhead = kind.CompactReadAhead
		}
		ctx, cancel := dbCtx()
		rows, err := o.store.OutboxItems(ctx, k.kind, k.dest, readAhead)
		cancel()
		if err != nil {
			o.release(k)
			return err
		}
		if len(rows) == 0 {
			// Release, then look again: an item committed by another node while we held the
			// lease was left to us.
			pending, err := o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
				return tx.OutboxRelease(ctx, k.kind, k.dest, o.owner)
			})
			if err != nil || !pending || o.ctx.Err() != nil {
				return err
			}
			if ok, err := o.lease(k); err != nil || !ok {
				return err
			}
			continue
		}
		items := make([]Item, len(rows))
		for i, r := range rows {
			items[i] = Item{Seq: r.Seq, Payload: r.Payload, Enqueued: time.UnixMilli(r.CreatedTS)}
		}
		if failures > 0 && kind.Compact != nil {
			if drop := kind.Compact(o.ctx, k.dest, items); len(drop) > 0 {
				ok, err := o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
					return tx.OutboxDrop(ctx, k.kind, k.dest, o.owner, drop)
				})
				if err != nil || !ok {
					return err
				}
				o.dropped.Add(int64(len(drop)))
				failures = 0
				continue
			}
		}
		failures = 0
		if len(items) > kind.ReadAhead {
			items = items[:kind.ReadAhead]
		}
		n := len(items)
		if kind.Batch != nil {
			n = min(max(kind.Batch(items), 1), len(items))
		} else {
			n = 1
		}
		if kind.KeepBatch {
			if n, err = o.keptBatch(k, &state, items, n); err != nil || n == 0 {
				return err
			}
		}
		batch := items[:n]
		outcome, derr := o.attempt(kind, k, batch)
		if o.ctx.Err() != nil && outcome == RetryLater {
			o.release(k) // stopping: not the destination's fault
			return nil
		}
		switch outcome {
		case Delivered, Drop:
			if outcome == Drop {
				o.dropped.Add(int64(len(batch)))
				o.log.Warn("outbox: dropping undeliverable items", "kind", k.kind, "destination", k.dest, "items", len(batch), "err", derr)
			} else {
				o.delivered.Add(int64(len(batch)))
			}
			ok, err := o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
				return tx.OutboxDelivered(ctx, k.kind, k.dest, o.owner, batch[len(batch)-1].Seq, time.Now().Add(o.opts.Lease).UnixMilli())
			})
			if err != nil || !ok {
				if err == nil {
					o.log.Warn("outbox: lost the lease during a delivery", "kind", k.kind, "destination", k.dest)
				}
				return err
			}
		default:
			o.failed.Add(1)
			delay := backoff(kind, state.Failures+1)
			state.Failures++
			level := slog.LevelInfo
			if kind.QuietRetries {
				level = slog.LevelDebug
			}
			o.log.Log(o.ctx, level, "outbox: delivery failed; retrying later", "kind", k.kind, "destination", k.dest,
				"failures", state.Failures, "retry_in", delay.Round(time.Millisecond), "err", derr)
			msg := ""
			if derr != nil {
				msg = derr.Error()
			}
			if _, err := o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
				return tx.OutboxFailed(ctx, k.kind, k.dest, o.owner, time.Now().Add(delay).UnixMilli(), msg)
			}); err != nil {
				return err
			}
			o.retryAfter(k, delay)
			return nil
		}
		state.Failures, state.BatchEnd = 0, 0
	}
}

// keptBatch returns how many of items form the batch of a KeepBatch kind: the batch
// recorded by an earlier attempt if there is one, else the first n items, recorded now.
// It returns 0 when the lease was lost.
func (o *Outbox) keptBatch(k key, state *storage.OutboxDestination, items []Item, n int) (int, error) {
	if state.BatchEnd > 0 {
		kept := 0
		for kept < len(items) && items[kept].Seq <= state.BatchEnd {
			kept++
		}
		if kept > 0 {
			return kept, nil
		}
	}
	end := items[n-1].Seq
	ok, err := o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
		return tx.OutboxHoldBatch(ctx, k.kind, k.dest, o.owner, end)
	})
	if err != nil || !ok {
		return 0, err
	}
	state.BatchEnd = end
	return n, nil
}

func (o *Outbox) release(k key) {
	if _, err := o.write(func(ctx context.Context, tx storage.Tx) (bool, error) {
		return tx.OutboxRelease(ctx, k.kind, k.dest, o.owner)
	}); err != nil {
		o.log.Warn("outbox: releasing a lease", "kind", k.kind, "destination", k.dest, "err", err)
	}
}

// retryAfter wakes a destination when its backoff ends.
func (o *Outbox) retryAfter(k key, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx.Err() != nil {
		return
	}
	if t := o.timers[k]; t != nil {
		t.Stop()
	}
	o.timers[k] = time.AfterFunc(d, func() {
		o.mu.Lock()
		delete(o.timers, k)
		o.mu.Unlock()
		o.wake(k)
	})
}

// attempt runs one delivery with the kind's timeout, renewing the lease while it runs;
// a panic in Deliver counts as a failure.
func (o *Outbox) attempt(kind *Kind, k key, batch []Item) (outcome Outcome, err error) {
	ctx, cancel := context.WithTimeout(o.ctx, kind.Timeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(o.opts.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if ok, err := o.lease(k); err == nil && !ok {
					cancel() // someone else holds it now: stop rather than deliver twice
					return
				}
			}
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			outcome, err = RetryLater, fmt.Errorf("deliver panicked: %v", r)
		}
	}()
	outcome, err = kind.Deliver(ctx, k.dest, batch)
	if outcome == RetryLater && err == nil {
		err = errors.New("delivery to be retried")
	}
	return outcome, err
}

// backoff is the wait after the nth consecutive failure: MinBackoff doubling up to
// MaxBackoff, less up to a fifth at random so that destinations failing together do not
// retry together.
func backoff(k *Kind, failures int) time.Duration {
	d := k.MinBackoff
	for i := 1; i < failures && d < k.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, k.MaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}
