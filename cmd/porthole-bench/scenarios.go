package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// SimpleResult is the outcome of the send, join and register scenarios.
type SimpleResult struct {
	Scenario    string         `json:"scenario"`
	Target      string         `json:"target"`
	Count       int            `json:"count"`
	Concurrency int            `json:"concurrency"`
	PerSecond   float64        `json:"per_s"`
	Latency     Percentiles    `json:"latency"`
	Extra       map[string]any `json:"extra,omitempty"`
	Errors      map[string]int `json:"errors_by_status"`
	Seconds     float64        `json:"seconds"`
	ServerCPUS  float64        `json:"server_cpu_s,omitempty"`
	ServerRSS   float64        `json:"server_rss_mib,omitempty"`
}

func printSimple(w io.Writer, r *SimpleResult) {
	errs := 0
	for _, n := range r.Errors {
		errs += n
	}
	fmt.Fprintf(w, "\n%s against %s: %d in %.1f s with concurrency %d: %.0f/s; latency p50 %.1f ms p95 %.1f ms p99 %.1f ms max %.1f ms; errors %d\n",
		r.Scenario, r.Target, r.Count, r.Seconds, r.Concurrency, r.PerSecond, r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max, errs)
	for k, v := range r.Extra {
		fmt.Fprintf(w, "  %s: %v\n", k, v)
	}
}

// timedLoop runs op n times over conc workers (bounded by ctx) and measures each call.
func timedLoop(ctx context.Context, n, conc int, op func(i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				err := op(i)
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return lat, time.Since(start), first
}

func finishSimple(r *SimpleResult, tg *targets, cpu0 time.Duration, errs *statusCounter) {
	r.Errors = errs.snapshot()
	if rss, cpu := tg.stats(); rss > 0 {
		r.ServerCPUS = (cpu - cpu0).Seconds()
		r.ServerRSS = mib(rss)
	}
}

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cm common
	cm.register(fs)
	senders := fs.Int("s", 8, "senders (closed loop)")
	n := fs.Int("n", 5000, "events to send in total")
	members := fs.Int("members", 0, "extra members (guests) joined to the room before sending, so every send is evaluated for them (push rules, counts)")
	nRooms := fs.Int("rooms", 1, "rooms the senders spread over (sender k sends in room k mod rooms)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *members < 0 || *members > 100000 {
		return fmt.Errorf("-members must be between 0 and 100000")
	}
	ctx, cancel := context.WithTimeout(ctx, cm.maxDuration)
	defer cancel()
	tg, err := cm.target(ctx, stderr)
	if err != nil {
		return err
	}
	defer tg.stop()
	base := tg.urls[0]
	hc := &http.Client{Transport: newTransport(max(*senders, 16))}
	errs := &statusCounter{}
	if *nRooms < 1 || *nRooms > *senders {
		return fmt.Errorf("--rooms must be between 1 and the number of senders")
	}
	clients := make([]*client, *senders)
	roomOf := make([]string, *senders)
	for i := range clients {
		if clients[i], err = registerUser(ctx, base, hc, errs); err != nil {
			return err
		}
		if i < *nRooms {
			if roomOf[i], err = clients[i].createPublicRoom(ctx); err != nil {
				return err
			}
		} else if roomOf[i] = roomOf[i%*nRooms]; clients[i].join(ctx, roomOf[i]) != nil {
			return fmt.Errorf("joining the room")
		}
	}
	if err := parallel(ctx, *members, 16, func(int) error {
		g, err := registerGuest(ctx, base, hc, errs)
		if err != nil {
			return err
		}
		return g.join(ctx, roomOf[0])
	}); err != nil {
		return err
	}
	_, cpu0 := tg.stats()
	// Each worker sends as "its" user: worker k owns clients[k], taking indices k, k+S, ...
	perSender := make([]chan int, *senders)
	var wg sync.WaitGroup
	lat := make([]time.Duration, *n)
	start := time.Now()
	for k := range perSender {
		perSender[k] = make(chan int, *n / *senders + 1)
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for i := range perSender[k] {
				t0 := time.Now()
				clients[k].send(ctx, roomOf[k], fmt.Sprintf("s%d-%d", start.UnixNano(), i), map[string]any{"msgtype": "m.text", "body": "load"})
				lat[i] = time.Since(t0)
			}
		}(k)
	}
	for i := 0; i < *n; i++ {
		perSender[i%*senders] <- i
	}
	for _, ch := range perSender {
		close(ch)
	}
	wg.Wait()
	took := time.Since(start)
	r := &SimpleResult{Scenario: "send", Target: base, Count: *n, Concurrency: *senders, PerSecond: float64(*n) / took.Seconds(), Latency: summarize(lat), Seconds: took.Seconds()}
	r.Extra = map[string]any{"room_members": *senders + *members}
	finishSimple(r, tg, cpu0, errs)
	if !cm.jsonOnly {
		printSimple(stderr, r)
	}
	return emit(stdout, r)
}

func runJoin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cm common
	cm.register(fs)
	n := fs.Int("n", 2000, "guests that join the room, one after another in groups of -c")
	conc := fs.Int("c", 16, "concurrent joins")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cm.maxDuration)
	defer cancel()
	tg, err := cm.target(ctx, stderr)
	if err != nil {
		return err
	}
	defer tg.stop()
	base := tg.urls[0]
	hc := &http.Client{Transport: newTransport(*conc)}
	errs := &statusCounter{}
	owner, err := registerUser(ctx, base, hc, errs)
	if err != nil {
		return err
	}
	room, err := owner.createPublicRoom(ctx)
	if err != nil {
		return err
	}
	guests := make([]*client, *n)
	if err := parallel(ctx, *n, 64, func(i int) error {
		var err error
		guests[i], err = registerGuest(ctx, base, hc, errs)
		return err
	}); err != nil {
		return err
	}
	_, cpu0 := tg.stats()
	lat, took, err := timedLoop(ctx, *n, *conc, func(i int) error { return guests[i].join(ctx, room) })
	if err != nil {
		return err
	}
	r := &SimpleResult{Scenario: "join", Target: base, Count: *n, Concurrency: *conc, PerSecond: float64(*n) / took.Seconds(), Latency: summarize(lat), Seconds: took.Seconds()}
	// The 10,000th join should cost what the 10th did: compare the first and last joins.
	k := min(100, *n/4+1)
	r.Extra = map[string]any{
		"first_joins_latency": summarize(lat[:k]),
		"last_joins_latency":  summarize(lat[*n-k:]),
		"members_at_end":      *n + 1,
	}
	finishSimple(r, tg, cpu0, errs)
	if !cm.jsonOnly {
		printSimple(stderr, r)
	}
	return emit(stdout, r)
}

func runRegister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cm common
	cm.register(fs)
	n := fs.Int("n", 5000, "guest registrations")
	conc := fs.Int("c", 32, "concurrent registrations")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cm.maxDuration)
	defer cancel()
	tg, err := cm.target(ctx, stderr)
	if err != nil {
		return err
	}
	defer tg.stop()
	base := tg.urls[0]
	hc := &http.Client{Transport: newTransport(*conc)}
	errs := &statusCounter{}
	_, cpu0 := tg.stats()
	lat, took, err := timedLoop(ctx, *n, *conc, func(int) error {
		_, err := registerGuest(ctx, base, hc, errs)
		return err
	})
	if err != nil {
		return err
	}
	r := &SimpleResult{Scenario: "register", Target: base, Count: *n, Concurrency: *conc, PerSecond: float64(*n) / took.Seconds(), Latency: summarize(lat), Seconds: took.Seconds()}
	finishSimple(r, tg, cpu0, errs)
	if !cm.jsonOnly {
		printSimple(stderr, r)
	}
	return emit(stdout, r)
}
