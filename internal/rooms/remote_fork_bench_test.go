package rooms_test

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
	"porthole/internal/rooms"
)

// BenchmarkPersistRemoteFork is a remote event that forks a room of n members (SQLite):
// its checks, and the resolution of the two branches' states with every state event and
// auth chain loaded from storage. Each iteration first merges the previous fork with a
// local message (not timed).
func BenchmarkPersistRemoteFork(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			s := hstest.New(b)
			f := &forkRoom{s: s, alice: s.Register(b, ""), rs: newRemote(b, s)}
			f.room = f.alice.CreateRoom(b, map[string]any{"preset": "public_chat"})
			f.bob = "@bob:" + f.rs.name
			state := roomState(b, f.alice, f.room)
			head := lastEvent(b, f.alice, f.room)
			prev, depth := head.id, head.depth
			for i := range n {
				u := f.bob
				if i > 0 {
					u = fmt.Sprintf("@u%d:%s", i, f.rs.name)
				}
				p, eid := f.rs.event(f.room, []id.EventID{prev}, depth+1, state, u, "m.room.member", sk(u), map[string]string{"membership": "join"})
				if got := f.rs.persist(f.room, p, eid); got != rooms.Accepted {
					b.Fatalf("join %d: %s", i, got)
				}
				state[[2]string{"m.room.member", u}] = eid
				prev, depth = eid, depth+1
			}
			pl := f.powerLevels(b)
			pl["users"].(map[string]any)[f.bob] = 50
			f.putState(b, "m.room.power_levels", pl)
			state = roomState(b, f.alice, f.room)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				f.alice.Send(b, f.room, "merge")
				h := lastEvent(b, f.alice, f.room)
				p, eid := f.rs.event(f.room, h.prev[:1], h.depth, state, f.bob, "m.room.topic", sk(""), map[string]string{"topic": fmt.Sprint(i)})
				b.StartTimer()
				got := f.rs.persist(f.room, p, eid)
				b.StopTimer()
				if got != rooms.Accepted {
					b.Fatalf("the forking topic: %s", got)
				}
				b.StartTimer()
			}
		})
	}
}
