package stateres_test

import (
	"fmt"
	"syscall"
	"testing"

	"porthole/internal/stateres"
)

// BenchmarkResolve resolves a fork of a room with n state events (members): on one
// branch alice changes the power levels, the topic and bans 1% of the members; on the
// other 1% of the members leave and the name changes. Events come from memory, so this
// is the algorithm alone (the auth chain walk included), not storage.
func BenchmarkResolve(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("state=%d", n), func(b *testing.B) {
			r, a, c := forkedRoom(b, n)
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				if _, err := stateres.Resolve(r.version, []stateres.StateMap{a, c}, r.fetch, nil); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time as well as wall time: a shared machine's load stretches the latter.
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(r.fetches)/float64(b.N), "fetches/op")
		})
	}
}

// cpuTime is the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func forkedRoom(b *testing.B, n int) (*room, stateres.StateMap, stateres.StateMap) {
	r := newRoom(b, "10")
	state := stateres.StateMap{}
	head := ""
	add := func(name, sender, typ string, stateKey *string, content any) {
		probe := fake{name, sender, typ, stateKey, content}
		var auth []string
		for _, k := range probeSelection(r, probe) {
			if x, ok := state[k]; ok {
				auth = append(auth, r.names[x])
			}
		}
		var prev []string
		if head != "" {
			prev = []string{head}
		}
		eid := r.build(name, sender, typ, stateKey, content, auth, prev)
		state[stateres.StateKey{Type: typ, StateKey: *stateKey}] = eid
		head = name
	}
	add("CREATE", alice, "m.room.create", sk(""), map[string]string{"creator": alice, "room_version": "10"})
	add("IMA", alice, "m.room.member", sk(alice), map[string]string{"membership": "join"})
	add("IPOWER", alice, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{alice: 100}})
	add("IJR", alice, "m.room.join_rules", sk(""), map[string]string{"join_rule": "public"})
	users := make([]string, 0, n)
	for i := 0; len(state) < n; i++ {
		u := fmt.Sprintf("@user%d:example.com", i)
		users = append(users, u)
		add("J"+u, u, "m.room.member", sk(u), map[string]string{"membership": "join"})
	}
	fork, forkHead := maps(state), head
	add("PA", alice, "m.room.power_levels", sk(""), map[string]any{"users": map[string]int{alice: 100, users[0]: 50}})
	add("TA", alice, "m.room.topic", sk(""), map[string]string{"topic": "a"})
	for _, u := range users[:n/100] {
		add("B"+u, alice, "m.room.member", sk(u), map[string]string{"membership": "ban"})
	}
	a := maps(state)
	state, head = fork, forkHead
	for _, u := range users[n/200 : n/200+n/100] {
		add("L"+u, u, "m.room.member", sk(u), map[string]string{"membership": "leave"})
	}
	add("NC", alice, "m.room.name", sk(""), map[string]string{"name": "c"})
	r.fetches = 0
	return r, a, maps(state)
}
