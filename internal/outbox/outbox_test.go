package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"porthole/internal/hstest"
	"porthole/internal/outbox"
	"porthole/internal/storage"
	"porthole/internal/storage/sqlstore"
)

// openStore opens a fresh database (SQLite, or PostgreSQL when PORTHOLE_TEST_POSTGRES is
// set) and returns its DSN too, so a test can open it again as a second node would.
func openStore(t *testing.T) (*sqlstore.Store, string) {
	t.Helper()
	dsn := hstest.FreshDatabase(t, t.TempDir())
	return openDSN(t, dsn), dsn
}

func openDSN(t *testing.T, dsn string) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func quietLog() *slog.Logger {
	if os.Getenv("PORTHOLE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(discard{}, nil))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func enqueue(t *testing.T, st storage.Store, ob *outbox.Outbox, msgs ...outbox.Message) {
	t.Helper()
	err := st.Write(context.Background(), func(tx storage.Tx) error { return ob.Enqueue(context.Background(), tx, msgs...) })
	if err != nil {
		t.Fatal(err)
	}
}

func msg(kind, dest string, payload string) outbox.Message {
	return outbox.Message{Kind: kind, Destination: dest, Payload: []byte(payload)}
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder collects deliveries per destination.
type recorder struct {
	mu      sync.Mutex
	batches map[string][][]string
}

func (r *recorder) add(dest string, batch []outbox.Item) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[string][][]string{}
	}
	var b []string
	for _, it := range batch {
		b = append(b, string(it.Payload))
	}
	r.batches[dest] = append(r.batches[dest], b)
}

func (r *recorder) flat(dest string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.batches[dest] {
		out = append(out, b...)
	}
	return out
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func TestOrderAndBatching(t *testing.T) {
	st, _ := openStore(t)
	var rec recorder
	ob := outbox.New(st, outbox.Options{Log: quietLog()}, outbox.Kind{
		Name:  "test",
		Batch: func(pending []outbox.Item) int { return 3 },
		Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
			rec.add(dest, batch)
			return outbox.Delivered, nil
		},
	})
	// Queue before starting, in several transactions, interleaving destinations.
	for i := 0; i < 10; i++ {
		enqueue(t, st, ob, msg("test", "a", "a"+strconv.Itoa(i)), msg("test", "b", "b"+strconv.Itoa(i)))
	}
	if err := ob.Start(); err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	for i := 10; i < 20; i++ {
		enqueue(t, st, ob, msg("test", "a", "a"+strconv.Itoa(i)))
	}
	waitFor(t, "all deliveries", func() bool {
		items, _ := st.OutboxItems(context.Background(), "test", "a", 100)
		return len(rec.flat("a")) == 20 && len(rec.flat("b")) == 10 && len(items) == 0
	})
	if got := rec.flat("a"); !slices.Equal(got, seq("a", 20)) {
		t.Errorf("destination a got %v, want in order", got)
	}
	if got := rec.flat("b"); !slices.Equal(got, seq("b", 10)) {
		t.Errorf("destination b got %v, want in order", got)
	}
	rec.mu.Lock()
	for d, bs := range rec.batches {
		for _, b := range bs {
			if len(b) > 3 || len(b) == 0 {
				t.Errorf("destination %s got a batch of %d", d, len(b))
			}
		}
	}
	rec.mu.Unlock()
	items, err := st.OutboxItems(context.Background(), "test", "a", 100)
	if err != nil || len(items) != 0 {
		t.Errorf("queue a after delivery: %d items, %v", len(items), err)
	}
}

func TestRetryGetsTheSameBatchThenBackoffResets(t *testing.T) {
	st, _ := openStore(t)
	var calls atomic.Int32
	var mu sync.Mutex
	var seen [][]int64
	ob := outbox.New(st, outbox.Options{Log: quietLog()}, outbox.Kind{
		Name:       "test",
		Batch:      func(pending []outbox.Item) int { return 2 },
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
			mu.Lock()
			var s []int64
			for _, it := range batch {
				s = append(s, it.Seq)
			}
			seen = append(seen, s)
			mu.Unlock()
			if calls.Add(1) <= 2 {
				return outbox.RetryLater, errors.New("gateway answered 500")
			}
			return outbox.Delivered, nil
		},
	})
	enqueue(t, st, ob, msg("test", "d", "x"), msg("test", "d", "y"), msg("test", "d", "z"))
	if err := ob.Start(); err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	waitFor(t, "queue to drain and the lease to be given up", func() bool {
		items, _ := st.OutboxItems(context.Background(), "test", "d", 10)
		d, _ := st.OutboxDestination(context.Background(), "test", "d")
		return len(items) == 0 && d.LeaseOwner == ""
	})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 {
		t.Fatalf("deliveries: %v, want 2 failures, the same batch again, then the rest", seen)
	}
	for i := 1; i < 3; i++ {
		if !slices.Equal(seen[i], seen[0]) {
			t.Errorf("attempt %d got %v, want the failed batch %v again", i+1, seen[i], seen[0])
		}
	}
	if len(seen[0]) != 2 || len(seen[3]) != 1 {
		t.Errorf("batches %v, want two items then one", seen)
	}
	d, err := st.OutboxDestination(context.Background(), "test", "d")
	if err != nil || d.Failures != 0 || d.RetryTS != 0 || d.LeaseOwner != "" {
		t.Errorf("destination after success: %+v %v, want the backoff reset and the lease free", d, err)
	}
	if _, failed, _ := ob.Counts(); failed != 2 {
		t.Errorf("failed count %d, want 2", failed)
	}
}

func TestBackoffHoldsDeliveriesBack(t *testing.T) {
	st, _ := openStore(t)
	var times []time.Time
	var mu sync.Mutex
	ob := outbox.New(st, outbox.Options{Log: quietLog()}, outbox.Kind{
		Name:       "test",
		MinBackoff: 200 * time.Millisecond,
		MaxBackoff: 300 * time.Millisecond,
		Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
			mu.Lock()
			defer mu.Unlock()
			times = append(times, time.Now())
			if len(times) == 1 {
				return outbox.RetryLater, nil
			}
			return outbox.Delivered, nil
		},
	})
	if err := ob.Start(); err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	enqueue(t, st, ob, msg("test", "d", "1"))
	waitFor(t, "first attempt", func() bool { mu.Lock(); defer mu.Unlock(); return len(times) == 1 })
	// New items do not cut the backoff short.
	enqueue(t, st, ob, msg("test", "d", "2"))
	waitFor(t, "delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(times) >= 2 })
	mu.Lock()
	defer mu.Unlock()
	// 200 ms less at most a fifth of jitter.
	if gap := times[1].Sub(times[0]); gap < 150*time.Millisecond {
		t.Errorf("retried after %v, want the backoff (≥ 160 ms)", gap)
	}
}

func TestDropAndPurge(t *testing.T) {
	st, _ := openStore(t)
	var rec recorder
	ob := outbox.New(st, outbox.Options{Log: quietLog()}, outbox.Kind{
		Name: "test",
		Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
			rec.add(dest, batch)
			if string(batch[0].Payload) == "bad" {
				return outbox.Drop, errors.New("never deliverable")
			}
			return outbox.Delivered, nil
		},
	})
	if err := ob.Start(); err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	enqueue(t, st, ob, msg("test", "d", "bad"), msg("test", "d", "good"))
	waitFor(t, "both attempts", func() bool { return len(rec.flat("d")) == 2 })
	if got := rec.flat("d"); !slices.Equal(got, []string{"bad", "good"}) {
		t.Errorf("got %v", got)
	}
	if _, _, dropped := ob.Counts(); dropped != 1 {
		t.Errorf("dropped %d, want 1", dropped)
	}
	// Purge removes the queue and the destination in the caller's transaction.
	ctx := context.Background()
	if err := st.Write(ctx, func(tx storage.Tx) error {
		if err := tx.OutboxEnqueue(ctx, "test", "gone", []byte("x"), 0); err != nil {
			return err
		}
		return ob.Purge(ctx, tx, "test", "gone")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.OutboxDestination(ctx, "test", "gone"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("purged destination: %v, want not found", err)
	}
	// An unknown kind is refused and the transaction rolled back.
	err := st.Write(ctx, func(tx storage.Tx) error { return ob.Enqueue(ctx, tx, msg("nope", "d", "x")) })
	if err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestCompactionHookAfterFailures(t *testing.T) {
	st, _ := openStore(t)
	var rec recorder
	var fail atomic.Bool
	fail.Store(true)
	var compacted atomic.Int32
	ob := outbox.New(st, outbox.Options{Log: quietLog()}, outbox.Kind{
		Name:       "test",
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		// Keep only the newest item of the backlog.
		Compact: func(ctx context.Context, dest string, backlog []outbox.Item) []int64 {
			compacted.Add(1)
			var drop []int64
			for _, it := range backlog[:len(backlog)-1] {
				drop = append(drop, it.Seq)
			}
			return drop
		},
		Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
			if fail.Load() {
				return outbox.RetryLater, nil
			}
			rec.add(dest, batch)
			return outbox.Delivered, nil
		},
	})
	enqueue(t, st, ob, msg("test", "d", "1"), msg("test", "d", "2"), msg("test", "d", "3"))
	if err := ob.Start(); err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	waitFor(t, "a failure", func() bool { _, f, _ := ob.Counts(); return f >= 1 })
	fail.Store(false)
	waitFor(t, "delivery", func() bool { return len(rec.flat("d")) == 1 })
	if got := rec.flat("d"); !slices.Equal(got, []string{"3"}) {
		t.Errorf("after compaction delivered %v, want only the newest", got)
	}
	if compacted.Load() == 0 {
		t.Error("Compact was not called")
	}
}

// TestRestartResumes: items queued by a process that died (its lease still in the table)
// are delivered by the next one.
func TestRestartResumes(t *testing.T) {
	st, dsn := openStore(t)
	var rec recorder
	kind := outbox.Kind{
		Name: "test",
		Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
			rec.add(dest, batch)
			return outbox.Delivered, nil
		},
	}
	lease := 300 * time.Millisecond
	first := outbox.New(st, outbox.Options{Log: quietLog(), Lease: lease}, kind)
	enqueue(t, st, first, msg("test", "d", "1"), msg("test", "d", "2"))
	// The dead process held the destination's lease.
	ctx := context.Background()
	if err := st.Write(ctx, func(tx storage.Tx) error {
		ok, err := tx.OutboxLease(ctx, "test", "d", "dead-node", time.Now().UnixMilli(), time.Now().Add(lease).UnixMilli())
		if err == nil && !ok {
			err = errors.New("could not take the lease")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	first.Close() // never started: as if killed before delivering
	st.Close()

	st2 := openDSN(t, dsn)
	second := outbox.New(st2, outbox.Options{Log: quietLog(), Lease: lease, ScanInterval: 50 * time.Millisecond}, kind)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	waitFor(t, "resumed delivery", func() bool { return len(rec.flat("d")) == 2 })
	if got := rec.flat("d"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("got %v", got)
	}
}

// TestTwoNodesNeverDeliverToOneDestinationAtOnce runs two outboxes (two processes' worth:
// separate connections and owners) on one database, both enqueueing for the same
// destinations, and checks that no destination ever has two deliveries in flight, that
// every item arrives once, and in each destination's order.
func TestTwoNodesNeverDeliverToOneDestinationAtOnce(t *testing.T) {
	st1, dsn := openStore(t)
	st2 := openDSN(t, dsn)
	var inflight [3]atomic.Int32
	var overlaps atomic.Int32
	var rec recorder
	var mu sync.Mutex
	byNode := map[string]int{}
	mk := func(node string) outbox.Kind {
		return outbox.Kind{
			Name:  "test",
			Batch: func(p []outbox.Item) int { return 2 },
			Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
				i, _ := strconv.Atoi(dest)
				if inflight[i].Add(1) > 1 {
					overlaps.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
				rec.add(dest, batch)
				mu.Lock()
				byNode[node] += len(batch)
				mu.Unlock()
				inflight[i].Add(-1)
				return outbox.Delivered, nil
			},
		}
	}
	opts := outbox.Options{Log: quietLog(), ScanInterval: 20 * time.Millisecond}
	n1 := outbox.New(st1, opts, mk("one"))
	n2 := outbox.New(st2, opts, mk("two"))
	for _, n := range []*outbox.Outbox{n1, n2} {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		defer n.Close()
	}
	const per = 30
	var wg sync.WaitGroup
	for node, pair := range []struct {
		st storage.Store
		ob *outbox.Outbox
	}{{st1, n1}, {st2, n2}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				var msgs []outbox.Message
				for d := 0; d < 3; d++ {
					msgs = append(msgs, msg("test", strconv.Itoa(d), fmt.Sprintf("%d-%d", node, i)))
				}
				if err := pair.st.Write(context.Background(), func(tx storage.Tx) error {
					return pair.ob.Enqueue(context.Background(), tx, msgs...)
				}); err != nil {
					t.Error(err)
					return
				}
				// Paced, so queues empty, leases are released and both nodes win some.
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for d := 0; d < 3; d++ {
		waitFor(t, "every item", func() bool { return len(rec.flat(strconv.Itoa(d))) >= 2*per })
	}
	if n := overlaps.Load(); n > 0 {
		t.Errorf("%d deliveries overlapped another to the same destination", n)
	}
	for d := 0; d < 3; d++ {
		got := rec.flat(strconv.Itoa(d))
		if len(got) != 2*per {
			t.Errorf("destination %d: %d deliveries, want %d (each item once)", d, len(got), 2*per)
		}
		// Each node's items keep their order (the two nodes' items interleave as they committed).
		for node := 0; node < 2; node++ {
			next := 0
			for _, p := range got {
				var n, i int
				fmt.Sscanf(p, "%d-%d", &n, &i)
				if n != node {
					continue
				}
				if i != next {
					t.Errorf("destination %d: node %d's item %d arrived when %d was due", d, node, i, next)
				}
				next = i + 1
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// On PostgreSQL the two nodes must take turns. (SQLite is one process in production;
	// there the second connection mostly loses the race for the write lock.)
	if st1.Shared() && (byNode["one"] == 0 || byNode["two"] == 0) {
		t.Errorf("deliveries by node: %v; want both nodes to have held leases", byNode)
	}
}

// TestKeepBatchRetriesExactlyTheRecordedBatch: with KeepBatch, items queued after a batch
// failed do not join it when it is retried, neither by the same outbox after a backoff
// nor by another one that finds the batch recorded (a crash mid-delivery).
func TestKeepBatchRetriesExactlyTheRecordedBatch(t *testing.T) {
	st, dsn := openStore(t)
	var mu sync.Mutex
	var seen [][]int64
	fail := atomic.Int32{}
	fail.Store(1)
	hang := make(chan struct{})
	hung := make(chan struct{}, 1)
	kind := func(hangFirst bool) outbox.Kind {
		return outbox.Kind{
			Name:       "test",
			KeepBatch:  true,
			Batch:      func(pending []outbox.Item) int { return len(pending) },
			MinBackoff: 20 * time.Millisecond,
			MaxBackoff: 50 * time.Millisecond,
			Deliver: func(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
				if hangFirst {
					hung <- struct{}{}
					select {
					case <-hang:
					case <-ctx.Done():
					}
					return outbox.RetryLater, errors.New("killed")
				}
				mu.Lock()
				var s []int64
				for _, it := range batch {
					s = append(s, it.Seq)
				}
				seen = append(seen, s)
				mu.Unlock()
				if fail.Add(-1) >= 0 {
					return outbox.RetryLater, errors.New("service answered 500")
				}
				return outbox.Delivered, nil
			},
		}
	}
	// The first node records the batch [1 2] and dies while sending it.
	first := outbox.New(st, outbox.Options{Log: quietLog(), Lease: 200 * time.Millisecond}, kind(true))
	enqueue(t, st, first, msg("test", "d", "1"), msg("test", "d", "2"))
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	<-hung
	enqueue(t, st, first, msg("test", "d", "3"))
	d, err := st.OutboxDestination(context.Background(), "test", "d")
	if err != nil || d.BatchEnd != 2 {
		t.Fatalf("destination during the first attempt: %+v %v, want batch_end 2", d, err)
	}
	// Closing cancels the delivery; the outbox then releases the lease without counting a
	// failure, as a dead node's expired lease would leave it.
	first.Close()
	close(hang)

	second := outbox.New(openDSN(t, dsn), outbox.Options{Log: quietLog(), ScanInterval: 50 * time.Millisecond}, kind(false))
	enqueue(t, st, second, msg("test", "d", "4"))
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	waitFor(t, "the queue to drain", func() bool {
		items, _ := st.OutboxItems(context.Background(), "test", "d", 10)
		return len(items) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	want := [][]int64{{1, 2}, {1, 2}, {3, 4}}
	if len(seen) != len(want) {
		t.Fatalf("batches %v, want %v", seen, want)
	}
	for i := range want {
		if !slices.Equal(seen[i], want[i]) {
			t.Fatalf("batches %v, want %v", seen, want)
		}
	}
}
