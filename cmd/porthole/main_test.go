package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"porthole/internal/hstest"
)

// TestMain lets the test binary act as the porthole binary, so process-level tests
// (kill -9, SIGTERM) run the real program without building it separately.
func TestMain(m *testing.M) {
	if os.Getenv("PORTHOLE_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type proc struct {
	url string
	cmd *exec.Cmd
	out *bytes.Buffer
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServer(t *testing.T, dataDir string, extraArgs ...string) *proc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], append([]string{"--listen", addr, "--data", dataDir, "--rate-limit", "off", "--log-level", "warn"}, extraArgs...)...)
	cmd.Env = append(os.Environ(), "PORTHOLE_TEST_RUN_MAIN=1", "PORTHOLE_BCRYPT_COST=4")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{url: "http://" + addr, cmd: cmd, out: out}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(p.url + "/_matrix/client/versions"); err == nil {
			resp.Body.Close()
			return p
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("server did not start: %s", out)
	return nil
}

var client = &http.Client{Timeout: 60 * time.Second}

// call sends a request and decodes the JSON answer, which must match the spec's schemas.
func call(t testing.TB, base, method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, base+"/_matrix/client/v3/"+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	hstest.CheckSpec(t, method, req.URL.EscapedPath(), resp.StatusCode, raw)
	var out map[string]any
	err = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, err
}

func mustCall(t *testing.T, base, method, path, token string, body any) map[string]any {
	t.Helper()
	status, out, err := call(t, base, method, path, token, body)
	if err != nil || status != 200 {
		t.Fatalf("%s %s: %d %v %v", method, path, status, out, err)
	}
	return out
}

// TestKillNeverLosesAcknowledgedEvents kills the server with SIGKILL again and again while
// clients send, then checks that every send answered with 200 is stored, in order, under the
// same event ID; that retrying a transaction ID returns that ID and creates nothing; and that
// a peek token taken before all the kills still streams every event.
func TestKillNeverLosesAcknowledgedEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills the server repeatedly")
	}
	dir := t.TempDir()
	p := startServer(t, dir)
	reg := mustCall(t, p.url, "POST", "register", "", map[string]any{"username": "writer", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
	token := reg["access_token"].(string)
	room := mustCall(t, p.url, "POST", "createRoom", token, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})["room_id"].(string)
	guest := mustCall(t, p.url, "POST", "register?kind=guest", "", map[string]any{})["access_token"].(string)
	peekFrom := mustCall(t, p.url, "GET", "events?timeout=0&room_id="+url.QueryEscape(room), guest, nil)["end"].(string)

	const senders = 4
	cycles := 6
	if n, err := strconv.Atoi(os.Getenv("PORTHOLE_KILL_CYCLES")); err == nil && n > 0 && n <= 500 {
		cycles = n // longer runs by hand
	}
	type ack struct{ txn, eventID string }
	acked := make([][]ack, senders)
	var mu sync.Mutex
	for cycle := 0; cycle < cycles; cycle++ {
		if cycle > 0 {
			p = startServer(t, dir)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for s := 0; s < senders; s++ {
			wg.Add(1)
			go func(s int) {
				defer wg.Done()
				for i := 0; i < 10000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					txn := fmt.Sprintf("c%d-s%d-%d", cycle, s, i)
					status, out, err := call(t, p.url, "PUT", "rooms/"+url.PathEscape(room)+"/send/m.room.message/"+txn, token,
						map[string]any{"msgtype": "m.text", "body": txn})
					if err != nil || status != 200 {
						return // the server died under us: this send was not acknowledged
					}
					mu.Lock()
					acked[s] = append(acked[s], ack{txn, out["event_id"].(string)})
					mu.Unlock()
				}
			}(s)
		}
		time.Sleep(time.Duration(150+rand.IntN(350)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		close(stop)
		wg.Wait()
	}
	p = startServer(t, dir)
	total := 0
	for s := range acked {
		total += len(acked[s])
	}
	if total < cycles {
		t.Fatalf("only %d sends were acknowledged", total)
	}
	// Every acknowledged event exists, and a retry of its transaction returns it.
	for s := range acked {
		for _, a := range acked[s] {
			mustCall(t, p.url, "GET", "rooms/"+url.PathEscape(room)+"/event/"+url.PathEscape(a.eventID), token, nil)
			again := mustCall(t, p.url, "PUT", "rooms/"+url.PathEscape(room)+"/send/m.room.message/"+a.txn, token,
				map[string]any{"msgtype": "m.text", "body": a.txn})
			if again["event_id"] != a.eventID {
				t.Fatalf("retried %s after restarts: got %v, first %s", a.txn, again["event_id"], a.eventID)
			}
		}
	}
	// The peek token from before the kills streams every event, each once, in send order
	// per sender.
	seen := map[string]int{}
	var order []string
	from := peekFrom
	for i := 0; i < 1000 && len(order) < total*2; i++ {
		out := mustCall(t, p.url, "GET", "events?timeout=0&limit=1000&room_id="+url.QueryEscape(room)+"&from="+url.QueryEscape(from), guest, nil)
		chunk := out["chunk"].([]any)
		if len(chunk) == 0 {
			break
		}
		for _, c := range chunk {
			ev := c.(map[string]any)
			if ev["type"] == "m.room.message" {
				id := ev["event_id"].(string)
				seen[id]++
				order = append(order, id)
			}
		}
		from = out["end"].(string)
	}
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
		if seen[id] != 1 {
			t.Fatalf("event %s streamed %d times", id, seen[id])
		}
	}
	for s := range acked {
		last := -1
		for _, a := range acked[s] {
			i, ok := pos[a.eventID]
			if !ok {
				t.Fatalf("acknowledged event %s (%s) missing from the stream", a.eventID, a.txn)
			}
			if i <= last {
				t.Fatalf("sender %d's events out of order at %s", s, a.txn)
			}
			last = i
		}
	}
	t.Logf("%d kill/restart cycles, %d acknowledged events checked, %d events streamed", cycles, total, len(order))
}

// TestGracefulShutdown: on SIGTERM a waiting long-poll is answered at once with an empty
// chunk and a usable end token, and the process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	p := startServer(t, t.TempDir())
	g := mustCall(t, p.url, "POST", "register?kind=guest", "", map[string]any{})["access_token"].(string)
	u := mustCall(t, p.url, "POST", "register", "", map[string]any{"username": "owner", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})["access_token"].(string)
	room := mustCall(t, p.url, "POST", "createRoom", u, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})["room_id"].(string)
	type result struct {
		status int
		body   map[string]any
		err    error
		took   time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		status, out, err := call(t, p.url, "GET", "events?timeout=60000&room_id="+url.QueryEscape(room), g, nil)
		done <- result{status, out, err, time.Since(t0)}
	}()
	// Wait until the poll is parked (the metric), then stop the server.
	parked := false
	for i := 0; i < 500 && !parked; i++ {
		resp, err := http.Get(p.url + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			parked = bytes.Contains(b, []byte("\nporthole_longpoll_waiting 1\n"))
		}
		if !parked {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !parked {
		t.Fatal("the long-poll never parked: shutdown would not be tested")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	r := <-done
	if r.err != nil || r.status != 200 || r.took > 20*time.Second {
		t.Fatalf("long-poll at shutdown: %d %v %v after %s", r.status, r.body, r.err, r.took)
	}
	if chunk, _ := r.body["chunk"].([]any); len(chunk) != 0 || r.body["end"] == "" || r.body["end"] == nil {
		t.Fatalf("shutdown answer: %v", r.body)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.out)
	}
}
