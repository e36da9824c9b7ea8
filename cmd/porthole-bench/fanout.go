package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type fanoutConfig struct {
	watchers    int
	messages    int
	rate        float64
	mode        string
	setupConc   int
	drain       time.Duration
	pollTimeout int
	settle      time.Duration
	// threads makes every message a reply in one thread, whose root is sent at set-up.
	threads bool
}

// FanoutResult is what one fanout run measured.
type FanoutResult struct {
	Target          string         `json:"target"`
	Mode            string         `json:"mode"`
	Watchers        int            `json:"watchers"`
	Messages        int            `json:"messages"`
	Rate            float64        `json:"rate_per_s"`
	Latency         Percentiles    `json:"latency"`
	LatencySendT0   Percentiles    `json:"latency_from_send_start"`
	FanoutTime      Percentiles    `json:"fanout_time"`
	SendLatency     Percentiles    `json:"send_latency"`
	DeliveriesPerS  float64        `json:"deliveries_per_s"`
	Expected        int            `json:"expected"`
	Delivered       int            `json:"delivered"`
	Missed          int            `json:"missed"`
	Duplicated      int            `json:"duplicated"`
	Early           int            `json:"delivered_before_send_returned"`
	Errors          map[string]int `json:"errors_by_status"`
	RateLimited     int64          `json:"rate_limited_retries"`
	SetupS          float64        `json:"setup_s"`
	RunS            float64        `json:"run_s"`
	ServerRSSStart  float64        `json:"server_rss_start_mib"`
	ServerRSSSetup  float64        `json:"server_rss_after_setup_mib"`
	ServerRSSPeak   float64        `json:"server_rss_peak_mib"`
	RSSPerWatcherKB float64        `json:"server_rss_per_watcher_kib"`
	ServerCPUS      float64        `json:"server_cpu_s"`
	GeneratorCPUS   float64        `json:"generator_cpu_s"`
	Nodes           int            `json:"nodes"`
	Note            string         `json:"note,omitempty"`
}

func runFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cm common
	cm.register(fs)
	var cfg fanoutConfig
	fs.IntVar(&cfg.watchers, "w", 100, "watchers (guests)")
	fs.IntVar(&cfg.messages, "m", 20, "messages to send")
	fs.Float64Var(&cfg.rate, "rate", 10, "messages per second")
	fs.StringVar(&cfg.mode, "mode", "peek", "peek (GET /events?room_id), web (as the live room pages: the starting token from the room's page, then the peek stream) or sync (joined guests long-polling /sync)")
	fs.IntVar(&cfg.setupConc, "setup-concurrency", 64, "concurrent set-up requests")
	fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "how long to wait for deliveries after the last send")
	fs.IntVar(&cfg.pollTimeout, "poll-timeout", 30000, "long-poll timeout in ms")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "wait after set-up when the server has no porthole_longpoll_waiting metric")
	fs.BoolVar(&cfg.threads, "threads", false, "send every message as a reply in one thread (m.thread relation to a root sent at set-up)")
	useNull := fs.Bool("null", false, "measure the in-process null server instead of a target")
	compare := fs.Bool("compare-null", false, "measure the null server first, then the target, and report the ratios")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.mode != "peek" && cfg.mode != "sync" && cfg.mode != "web" {
		return fmt.Errorf("--mode must be peek, web or sync")
	}
	if cfg.watchers < 1 || cfg.messages < 1 || cfg.rate <= 0 {
		return fmt.Errorf("-w, -m and --rate must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, cm.maxDuration)
	defer cancel()
	raiseFileLimit()

	var results []*FanoutResult
	if *useNull || *compare {
		// The null server runs as a child process, so its memory, CPU and file
		// descriptors are its own, as the target's are.
		ns, err := spawnNull(ctx, stderr)
		if err != nil {
			return err
		}
		nullCfg := cfg
		if nullCfg.mode == "web" {
			nullCfg.mode = "peek" // the null server has no pages: its watchers are the same long-polls
		}
		res, err := fanout(ctx, &targets{urls: []string{ns.url}, pids: []int{ns.pid}}, nullCfg, stderr)
		ns.stop()
		if err != nil {
			return fmt.Errorf("null server: %w", err)
		}
		res.Target = "null"
		results = append(results, res)
	}
	if !*useNull {
		tg, err := cm.target(ctx, stderr)
		if err != nil {
			return err
		}
		res, err := fanout(ctx, tg, cfg, stderr)
		tg.stop()
		if err != nil {
			return err
		}
		res.Target = tg.label()
		results = append(results, res)
	}
	out := map[string]any{"scenario": "fanout", "results": results}
	if len(results) == 2 {
		out["ratio_to_null"] = ratios(results[1], results[0])
	}
	if !cm.jsonOnly {
		printFanout(stderr, results)
	}
	return emit(stdout, out)
}

// ratios compares a target run with the null server's (1.0 = the machine's limit).
func ratios(t, n *FanoutResult) map[string]float64 {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return map[string]float64{
		"p50":          div(t.Latency.P50, n.Latency.P50),
		"p99":          div(t.Latency.P99, n.Latency.P99),
		"deliveries_s": div(t.DeliveriesPerS, n.DeliveriesPerS),
	}
}

func printFanout(w io.Writer, rs []*FanoutResult) {
	fmt.Fprintf(w, "\n%-28s %6s %6s %8s %8s %8s %8s %10s %7s %5s %6s %8s %9s\n",
		"target", "mode", "W", "p50 ms", "p95 ms", "p99 ms", "max ms", "deliv/s", "missed", "dup", "errors", "rss MiB", "KiB/watch")
	for _, r := range rs {
		errs := 0
		for _, n := range r.Errors {
			errs += n
		}
		fmt.Fprintf(w, "%-28s %6s %6d %8.1f %8.1f %8.1f %8.1f %10.0f %7d %5d %6d %8.1f %9.1f\n",
			r.Target, r.Mode, r.Watchers, r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max,
			r.DeliveriesPerS, r.Missed, r.Duplicated, errs, r.ServerRSSPeak, r.RSSPerWatcherKB)
	}
	if len(rs) == 2 {
		rt := ratios(rs[1], rs[0])
		fmt.Fprintf(w, "ratio to null: p50 %.2f  p99 %.2f  deliveries/s %.2f\n", rt["p50"], rt["p99"], rt["deliveries_s"])
	}
}

// fanout runs one fanout measurement; with several nodes the watchers are split between
// them and the sender uses the first.
func fanout(ctx context.Context, tg *targets, cfg fanoutConfig, log io.Writer) (*FanoutResult, error) {
	W, M := cfg.watchers, cfg.messages
	base := tg.urls[0]
	res := &FanoutResult{Mode: cfg.mode, Watchers: W, Messages: M, Rate: cfg.rate, Expected: W * M, Nodes: len(tg.urls)}
	tr := newTransport(W)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	errs := &statusCounter{}
	limited := &atomicInt64{}
	rssStart, cpuStart := tg.stats()
	genCPUStart := selfCPU()
	sampler := sampleRSS(tg)
	setupStart := time.Now()

	sender, err := registerUser(ctx, base, hc, errs)
	if err != nil {
		return nil, err
	}
	sender.limited = limited
	roomID, err := sender.createPublicRoom(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating the room: %w", err)
	}
	fmt.Fprintf(log, "fanout %s: room %s, setting up %d %s watchers\n", base, roomID, W, cfg.mode)
	root := ""
	if cfg.threads {
		raw, err := sender.do(ctx, "PUT", "rooms/"+url.PathEscape(roomID)+"/send/m.room.message/root", map[string]any{"msgtype": "m.text", "body": "thread root"})
		if root = stringField(raw, `"event_id":"`); err != nil || root == "" {
			return nil, fmt.Errorf("sending the thread root: %v %.200s", err, raw)
		}
	}

	// Set up watchers with bounded concurrency: register, then join (sync mode) and take
	// a starting token, so nothing sent later can be missed.
	watchers := make([]*client, W)
	tokens := make([]string, W)
	if err := parallel(ctx, W, cfg.setupConc, func(i int) error {
		c, err := registerGuest(ctx, tg.urls[i%len(tg.urls)], hc, errs)
		if err != nil {
			return err
		}
		c.limited = limited
		watchers[i] = c
		if cfg.mode == "sync" {
			return c.join(ctx, roomID)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := parallel(ctx, W, cfg.setupConc, func(i int) error {
		var raw []byte
		var err error
		if cfg.mode == "sync" {
			raw, err = watchers[i].do(ctx, "GET", syncPath("", 0), nil)
			tokens[i] = stringField(raw, `"next_batch":"`)
		} else if cfg.mode == "web" {
			// As a visitor's browser: load the room's page, then follow it from its token.
			raw, err = watchers[i].page(ctx, "room/"+url.PathEscape(roomID))
			tokens[i] = stringField(raw, `data-from="`)
		} else {
			raw, err = watchers[i].do(ctx, "GET", eventsPath(roomID, "", 0), nil)
			tokens[i] = stringField(raw, `"end":"`)
		}
		if err == nil && tokens[i] == "" {
			err = fmt.Errorf("no stream token in %.200s", raw)
		}
		return err
	}); err != nil {
		return nil, err
	}

	// Receipts: the time each watcher got each message (0 = not yet).
	got := make([]atomic.Int64, W*M)
	var dups, delivered atomic.Int64
	pollCtx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	var wg sync.WaitGroup
	for i := 0; i < W; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			watch(pollCtx, watchers[i], roomID, tokens[i], cfg, got[i*M:(i+1)*M], &dups, &delivered)
		}(i)
	}
	waitParked(ctx, hc, tg.urls, int64(W), cfg.settle, log)
	res.SetupS = time.Since(setupStart).Seconds()
	if rss, _ := tg.stats(); rss > 0 {
		res.ServerRSSSetup = mib(rss)
	}

	// Send M messages at the rate, recording when each send's answer arrived.
	sendStart := make([]int64, M)
	sendDone := make([]int64, M)
	var sendLat []time.Duration
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
	runStart := time.Now()
	for s := 0; s < M; s++ {
		if s > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				tick.Stop()
				return nil, ctx.Err()
			}
		}
		t0 := time.Now()
		content := map[string]any{"msgtype": "m.text", "body": "bench " + strconv.Itoa(s), "bench_seq": s, "bench_sent_us": t0.UnixMicro()}
		if root != "" {
			content["m.relates_to"] = map[string]any{"rel_type": "m.thread", "event_id": root}
		}
		if err := sender.send(ctx, roomID, fmt.Sprintf("b%d-%d", runStart.UnixNano(), s), content); err != nil {
			tick.Stop()
			return nil, fmt.Errorf("sending message %d: %w", s, err)
		}
		t1 := time.Now()
		sendStart[s], sendDone[s] = t0.UnixNano(), t1.UnixNano()
		sendLat = append(sendLat, t1.Sub(t0))
	}
	tick.Stop()
	// Drain: wait until every watcher has every message, or the drain time passes.
	drainEnd := time.Now().Add(cfg.drain)
	for delivered.Load() < int64(W*M) && time.Now().Before(drainEnd) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	stopPolls()
	wg.Wait()
	res.RunS = time.Since(runStart).Seconds()

	// Latencies, fan-out times, throughput.
	var lat, latT0, fan []time.Duration
	var last int64
	for s := 0; s < M; s++ {
		var maxRecv int64
		for i := 0; i < W; i++ {
			t := got[i*M+s].Load()
			if t == 0 {
				continue
			}
			res.Delivered++
			d := time.Duration(t - sendDone[s])
			if d < 0 {
				res.Early++
				d = 0
			}
			lat = append(lat, d)
			latT0 = append(latT0, time.Duration(t-sendStart[s]))
			maxRecv = max(maxRecv, t)
		}
		if maxRecv > 0 {
			fan = append(fan, max(time.Duration(maxRecv-sendDone[s]), 0))
			last = max(last, maxRecv)
		}
	}
	res.Latency, res.LatencySendT0, res.FanoutTime, res.SendLatency = summarize(lat), summarize(latT0), summarize(fan), summarize(sendLat)
	if last > sendStart[0] {
		res.DeliveriesPerS = float64(res.Delivered) / (float64(last-sendStart[0]) / 1e9)
	}
	res.Missed = res.Expected - res.Delivered
	res.Duplicated = int(dups.Load())
	res.Errors = errs.snapshot()
	res.RateLimited = limited.load()
	res.ServerRSSStart = mib(rssStart)
	res.ServerRSSPeak = mib(sampler.finish())
	if res.ServerRSSSetup > 0 && rssStart > 0 {
		res.RSSPerWatcherKB = (res.ServerRSSSetup - mib(rssStart)) * 1024 / float64(W)
	}
	if _, cpu := tg.stats(); cpu > 0 {
		res.ServerCPUS = (cpu - cpuStart).Seconds()
	}
	res.GeneratorCPUS = (selfCPU() - genCPUStart).Seconds()
	return res, nil
}

// watch long-polls as one watcher until ctx ends or it has every message, recording the
// arrival of each benchmark message and counting duplicates.
func watch(ctx context.Context, c *client, roomID, token string, cfg fanoutConfig, got []atomic.Int64, dups, delivered *atomic.Int64) {
	M := len(got)
	have := 0
	for have < M && ctx.Err() == nil {
		var raw []byte
		var err error
		if cfg.mode == "sync" {
			raw, err = c.do(ctx, "GET", syncPath(token, cfg.pollTimeout), nil)
		} else {
			raw, err = c.do(ctx, "GET", eventsPath(roomID, token, cfg.pollTimeout), nil)
		}
		now := time.Now().UnixNano()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, seq := range benchSeqs(raw) {
			if seq < 0 || seq >= M {
				continue
			}
			if !got[seq].CompareAndSwap(0, now) {
				dups.Add(1)
				continue
			}
			have++
			delivered.Add(1)
		}
		next := ""
		if cfg.mode == "sync" {
			next = stringField(raw, `"next_batch":"`)
		} else {
			next = stringField(raw, `"end":"`)
		}
		if next != "" {
			token = next
		}
	}
}

var seqKey = []byte(`"bench_seq":`)

// benchSeqs finds the bench_seq values in a response without decoding it: the generator
// shares the machine with the server, so it stays cheap.
func benchSeqs(raw []byte) []int {
	var out []int
	for {
		i := bytes.Index(raw, seqKey)
		if i < 0 {
			return out
		}
		raw = raw[i+len(seqKey):]
		j := 0
		for j < len(raw) && raw[j] >= '0' && raw[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(string(raw[:j])); err == nil {
			out = append(out, n)
		}
		raw = raw[j:]
	}
}

// stringField returns the string after key (e.g. `"end":"`), up to the closing quote.
func stringField(raw []byte, key string) string {
	i := bytes.Index(raw, []byte(key))
	if i < 0 {
		return ""
	}
	rest := raw[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// parallel runs fn(0..n-1) with at most conc at a time; the first error stops it.
func parallel(ctx context.Context, n, conc int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(conc, 1))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}(i)
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// waitParked waits until the server reports n long-polls waiting (the
// porthole_longpoll_waiting metric, which the null server also serves), or, for servers
// without it, for the settle time.
func waitParked(ctx context.Context, hc *http.Client, bases []string, n int64, settle time.Duration, log io.Writer) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var v int64
		ok := true
		for _, base := range bases {
			g, found := scrapeGauge(ctx, hc, base, "porthole_longpoll_waiting")
			v, ok = v+g, ok && found
		}
		if !ok {
			fmt.Fprintf(log, "no porthole_longpoll_waiting metric: waiting %s for watchers to park\n", settle)
			time.Sleep(settle)
			return
		}
		if v >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(log, "warning: not all %d watchers parked after 60 s\n", n)
}

func scrapeGauge(ctx context.Context, hc *http.Client, base, name string) (int64, bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return 0, false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, false
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			f, err := strconv.ParseFloat(strings.TrimSpace(line[len(name)+1:]), 64)
			return int64(f), err == nil
		}
	}
	return 0, false
}
