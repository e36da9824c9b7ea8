package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"porthole/internal/hstest"
)

// Rooms are loaded into memory without holding up writers, and brought up to date with
// what was published during the load: while senders write to several rooms and the rooms
// are evicted and reloaded over and over, every watcher still gets every message of its
// room once, in order.
func TestRoomLoadsRaceWrites(t *testing.T) {
	s := hstest.New(t)
	const rooms, perRoom = 4, 60
	owner := s.Register(t, "")
	var ids []string
	var senders, watchers []*hstest.Client
	for i := 0; i < rooms; i++ {
		ids = append(ids, owner.WorldReadableRoom(t))
		u := s.Register(t, "")
		u.Join(t, ids[i])
		senders = append(senders, u)
		watchers = append(watchers, s.Guest(t))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stopEvict := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopEvict:
				return
			default:
				s.Server.Hub().Evict(0)
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var wg sync.WaitGroup
	got := make([][]string, rooms)
	for i := 0; i < rooms; i++ {
		from := watchers[i].Must(t, 200, "GET", eventsPath(ids[i], "", "timeout=0"), nil).Get("end").String()
		wg.Add(2)
		go func(i int, from string) {
			defer wg.Done()
			for len(got[i]) < perRoom && ctx.Err() == nil {
				r := watchers[i].DoCtx(ctx, t, "GET", eventsPath(ids[i], from, "timeout=5000"), nil)
				if r.Status != 200 {
					t.Errorf("room %d: %s", i, r)
					return
				}
				got[i] = append(got[i], chunkBodies(r)...)
				from = r.Get("end").String()
			}
		}(i, from)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < perRoom; j++ {
				senders[i].Send(t, ids[i], fmt.Sprintf("r%d m%d", i, j))
			}
		}(i)
	}
	wg.Wait()
	close(stopEvict)
	for i := 0; i < rooms; i++ {
		if len(got[i]) != perRoom {
			t.Fatalf("room %d: %d messages, want %d: %v", i, len(got[i]), perRoom, got[i])
		}
		for j, b := range got[i] {
			if want := fmt.Sprintf("r%d m%d", i, j); b != want {
				t.Fatalf("room %d, message %d: %q, want %q (all: %v)", i, j, b, want, got[i])
			}
		}
	}
}

// A message committed while a room is being read from storage reaches the room's window.
func TestWriteDuringRoomLoad(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := s.Guest(t)
	from := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	for i := 0; i < 5; i++ {
		want := fmt.Sprintf("during load %d", i)
		s.Server.Hub().Evict(0)
		var once sync.Once
		s.Server.Hub().SetLoadHook(func(string) { once.Do(func() { owner.Send(t, room, want) }) })
		r := g.Must(t, 200, "GET", eventsPath(room, from, "timeout=2000"), nil)
		s.Server.Hub().SetLoadHook(nil)
		if got := chunkBodies(r); len(got) != 1 || got[0] != want {
			t.Fatalf("round %d: a message sent during the room's load: %s", i, r)
		}
		from = r.Get("end").String()
	}
}
