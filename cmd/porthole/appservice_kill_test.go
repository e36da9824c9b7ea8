package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestKillKeepsAcknowledgedAppServiceEvents: the server is killed (SIGKILL) while a
// transaction to an application service is in flight and more events wait behind it;
// after a restart the service gets the same transaction (same ID, same events) and then
// every event acknowledged before the kill, none lost.
func TestKillKeepsAcknowledgedAppServiceEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills the server")
	}
	type received struct {
		id     string
		events []string
	}
	var mu sync.Mutex
	answer := false // until the restart the service hangs
	var got []received
	arrived := make(chan struct{}, 100)
	hanging := make(chan struct{}, 100)
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer hs-kill" || !strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/transactions/") {
			w.WriteHeader(403)
			return
		}
		var body struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
		}
		raw, _ := io.ReadAll(r.Body)
		json.Unmarshal(raw, &body)
		rec := received{id: strings.TrimPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")}
		for _, e := range body.Events {
			rec.events = append(rec.events, e.EventID)
		}
		mu.Lock()
		ok := answer
		got = append(got, rec)
		mu.Unlock()
		if !ok {
			hanging <- struct{}{}
			<-r.Context().Done() // the server dies with the request in flight
			return
		}
		io.WriteString(w, "{}")
		arrived <- struct{}{}
	}))
	defer as.Close()

	dir := t.TempDir()
	reg := filepath.Join(dir, "bridge.yaml")
	os.WriteFile(reg, []byte(fmt.Sprintf("id: bridge\nurl: %s\nas_token: as-kill\nhs_token: hs-kill\nsender_localpart: bridgebot\n"+
		"namespaces:\n  users:\n    - exclusive: true\n      regex: '@br_.*'\n", as.URL)), 0o600)
	args := []string{"--appservice", reg}
	p := startServer(t, dir, args...)
	alice := mustCall(t, p.url, "POST", "register", "", map[string]any{"username": "alice", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})["access_token"].(string)
	room := mustCall(t, p.url, "POST", "createRoom", alice, map[string]any{"preset": "public_chat"})["room_id"].(string)
	// The service's own bot joins: every event of the room interests the service.
	mustCall(t, p.url, "POST", "join/"+url.PathEscape(room), "as-kill", map[string]any{})
	select {
	case <-hanging:
	case <-time.After(15 * time.Second):
		t.Fatal("no transaction reached the service")
	}
	var sent []string
	for i := 0; i < 5; i++ {
		r := mustCall(t, p.url, "PUT", fmt.Sprintf("rooms/%s/send/m.room.message/k%d", url.PathEscape(room), i), alice, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("message ", i)})
		sent = append(sent, r["event_id"].(string))
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()

	mu.Lock()
	answer = true
	first := got[0]
	mu.Unlock()
	startServer(t, dir, args...)
	deadline := time.After(30 * time.Second)
	for {
		mu.Lock()
		seen := map[string]bool{}
		for _, rec := range got[1:] {
			for _, e := range rec.events {
				seen[e] = true
			}
		}
		done := true
		for _, e := range sent {
			done = done && seen[e]
		}
		var retry received
		if len(got) > 1 {
			retry = got[1]
		}
		mu.Unlock()
		if done {
			if retry.id != first.id || fmt.Sprint(retry.events) != fmt.Sprint(first.events) {
				t.Errorf("after the restart the first transaction was %s %v, want %s %v again", retry.id, retry.events, first.id, first.events)
			}
			return
		}
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("acknowledged events never reached the service after the restart: sent %v, got %v", sent, seen)
		}
	}
}
