package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestKillKeepsAcknowledgedPushes: the server is killed (SIGKILL) after an event was
// acknowledged while its push was on its way to a gateway that had not answered; after a
// restart the push is delivered.
func TestKillKeepsAcknowledgedPushes(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills the server")
	}
	var mu sync.Mutex
	answer := false // until the restart the gateway hangs
	got := map[string]int{}
	arrived := make(chan string, 100)
	hanging := make(chan struct{}, 100)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			Notification struct {
				EventID string `json:"event_id"`
			} `json:"notification"`
		}
		json.Unmarshal(raw, &body)
		mu.Lock()
		ok := answer
		if ok {
			got[body.Notification.EventID]++
		}
		mu.Unlock()
		if !ok {
			hanging <- struct{}{}
			<-r.Context().Done() // the server dies with the request in flight
			return
		}
		io.WriteString(w, "{}")
		arrived <- body.Notification.EventID
	}))
	defer gw.Close()

	dir := t.TempDir()
	args := []string{"--push-allow-private", "on"}
	p := startServer(t, dir, args...)
	reg := func(name string) string {
		return mustCall(t, p.url, "POST", "register", "", map[string]any{"username": name, "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})["access_token"].(string)
	}
	alice, bob := reg("alice"), reg("bob")
	room := mustCall(t, p.url, "POST", "createRoom", bob, map[string]any{"preset": "public_chat"})["room_id"].(string)
	mustCall(t, p.url, "POST", "join/"+url.PathEscape(room), alice, map[string]any{})
	mustCall(t, p.url, "POST", "pushers/set", alice, map[string]any{"kind": "http", "app_id": "org.example", "pushkey": "k",
		"app_display_name": "x", "device_display_name": "y", "lang": "en", "data": map[string]any{"url": gw.URL + "/_matrix/push/v1/notify"}})
	sent := mustCall(t, p.url, "PUT", "rooms/"+url.PathEscape(room)+"/send/m.room.message/t1", bob, map[string]any{"msgtype": "m.text", "body": "hi"})
	eventID := sent["event_id"].(string)
	select {
	case <-hanging:
	case <-time.After(15 * time.Second):
		t.Fatal("the push never reached the gateway")
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()

	mu.Lock()
	answer = true
	mu.Unlock()
	startServer(t, dir, args...)
	select {
	case id := <-arrived:
		if id != eventID {
			t.Fatalf("after the restart the gateway got %q, want %q", id, eventID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the acknowledged event's push was lost with the process")
	}
}
