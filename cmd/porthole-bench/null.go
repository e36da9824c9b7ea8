package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// nullServer is the trivial server that marks the machine's HTTP ceiling: no storage, no
// auth, every message encoded once, every parked long-poll woken by closing one channel.
// It speaks just enough of the Client-Server API for the fanout scenario in both modes.
type nullServer struct {
	url  string
	srv  *http.Server
	mu   sync.Mutex
	msgs [][]byte // encoded events; position i+1 is msgs[i]
	wake chan struct{}
	ids  atomic.Int64
	park atomic.Int64
}

func startNull(addr string) (*nullServer, error) {
	if err := checkLoopback("http://" + addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ns := &nullServer{wake: make(chan struct{}), url: "http://" + ln.Addr().String()}
	ns.srv = &http.Server{Handler: ns, ReadHeaderTimeout: 10 * time.Second}
	go ns.srv.Serve(ln)
	return ns, nil
}

func (ns *nullServer) close() { ns.srv.Close() }

func runNull(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("null", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", "127.0.0.1:8448", "loopback address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseFileLimit()
	ns, err := startNull(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "null server on %s (pid %d)\n", ns.url, os.Getpid())
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	select {
	case <-ctx.Done():
	case <-term:
	}
	ns.close()
	return nil
}

func (ns *nullServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/metrics":
		fmt.Fprintf(w, "porthole_longpoll_waiting %d\n", ns.park.Load())
	case strings.HasSuffix(p, "/versions"):
		writeRaw(w, `{"versions":["v1.12"]}`)
	case strings.HasSuffix(p, "/register"):
		n := ns.ids.Add(1)
		writeRaw(w, fmt.Sprintf(`{"user_id":"@%d:null","access_token":"t%d","device_id":"D%d","home_server":"null"}`, n, n, n))
	case strings.HasSuffix(p, "/createRoom"):
		writeRaw(w, `{"room_id":"!bench:null"}`)
	case strings.Contains(p, "/join"):
		writeRaw(w, `{"room_id":"!bench:null"}`)
	case strings.Contains(p, "/send/"):
		ns.send(w, r)
	case strings.HasSuffix(p, "/events"):
		ns.poll(w, r, "from", false)
	case strings.HasSuffix(p, "/sync"):
		ns.poll(w, r, "since", true)
	default:
		w.WriteHeader(404)
		writeRaw(w, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)
	}
}

func writeRaw(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, body)
}

// send stores the message once, encoded, and wakes every parked poll.
func (ns *nullServer) send(w http.ResponseWriter, r *http.Request) {
	var content json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&content); err != nil {
		w.WriteHeader(400)
		return
	}
	ns.mu.Lock()
	pos := len(ns.msgs) + 1
	ev, _ := json.Marshal(map[string]any{"type": "m.room.message", "room_id": "!bench:null", "sender": "@sender:null",
		"event_id": "$" + strconv.Itoa(pos), "origin_server_ts": time.Now().UnixMilli(), "content": content})
	ns.msgs = append(ns.msgs, ev)
	old := ns.wake
	ns.wake = make(chan struct{})
	ns.mu.Unlock()
	close(old)
	writeRaw(w, `{"event_id":"$`+strconv.Itoa(pos)+`"}`)
}

// poll answers /events and /sync: everything after the token, or waits for the next send.
func (ns *nullServer) poll(w http.ResponseWriter, r *http.Request, tokenParam string, sync bool) {
	q := r.URL.Query()
	from := -1
	if t := q.Get(tokenParam); t != "" {
		from, _ = strconv.Atoi(strings.TrimPrefix(t, "s"))
	}
	timeout, _ := strconv.Atoi(q.Get("timeout"))
	ns.mu.Lock()
	cur := len(ns.msgs)
	wake := ns.wake
	ns.mu.Unlock()
	if from < 0 {
		from = cur
	}
	if cur <= from && timeout > 0 {
		ns.park.Add(1)
		t := time.NewTimer(time.Duration(timeout) * time.Millisecond)
		select {
		case <-wake:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		ns.park.Add(-1)
	}
	ns.mu.Lock()
	cur = len(ns.msgs)
	chunk := ns.msgs[min(from, cur):cur]
	ns.mu.Unlock()
	var b strings.Builder
	end := "s" + strconv.Itoa(cur)
	if sync {
		b.WriteString(`{"next_batch":"` + end + `","rooms":{"join":{"!bench:null":{"timeline":{"events":[`)
	} else {
		b.WriteString(`{"start":"s` + strconv.Itoa(from) + `","end":"` + end + `","chunk":[`)
	}
	for i, ev := range chunk {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(ev)
	}
	if sync {
		b.WriteString(`]}}}}}`)
	} else {
		b.WriteString(`]}`)
	}
	writeRaw(w, b.String())
}
