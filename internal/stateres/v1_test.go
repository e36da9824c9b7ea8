package stateres_test

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"

	"porthole/internal/stateres"
)

// useEventIDsOfEvents makes mautrix read the IDs that room version 1 and 2 events carry
// (tests of this package do not run in parallel).
func useEventIDsOfEvents(t *testing.T) {
	pdu.UseInternalMetaForGetEventID = true
	t.Cleanup(func() { pdu.UseInternalMetaForGetEventID = false })
}

func TestV1NeedsEventIDsOfEvents(t *testing.T) {
	sets := []stateres.StateMap{{}, {}}
	if _, err := stateres.Resolve("1", sets, nil, nil); !errors.Is(err, stateres.ErrCustomEventIDs) {
		t.Fatalf("got %v", err)
	}
}

// State resolution v1 (room version 1), with the behaviour of Synapse's implementation
// where the spec leaves room: memberships are each checked against the state as it was
// before any membership was resolved, and keys that only some sets have are not
// conflicts.
func TestV1(t *testing.T) {
	pl := func(users map[string]int) map[string]any { return map[string]any{"users": users} }
	cases := []struct {
		name   string
		events []fake
		chains [][]string
		want   []string
	}{{
		// The power levels: the shallowest first, then each deeper one the auth rules
		// allow on top of it. Bob's is refused (his membership is itself in conflict, so
		// not in R), alice's ban of bob too (hers is): the room forgets the ban. This is
		// the kind of reset the spec warns of for v1.
		name: "ban vs power levels resets the ban",
		events: []fake{
			power("PA", alice, pl(map[string]int{alice: 100, bob: 50})),
			member("MA", alice, alice, "join"),
			member("MB", alice, bob, "ban"),
			power("PB", bob, pl(map[string]int{alice: 100, bob: 50})),
		},
		chains: [][]string{{"END", "MB", "MA", "PA", "START"}, {"END", "PB", "PA"}},
		want:   []string{"PA", "MA", "IMB"},
	}, {
		// Two power levels events in a row on one branch, both allowed: the deepest wins.
		name: "power levels chain",
		events: []fake{
			power("PA", alice, pl(map[string]int{alice: 100, bob: 50})),
			power("PB", alice, pl(map[string]int{alice: 100, bob: 60})),
			topic("T1", alice),
		},
		chains: [][]string{{"END", "PB", "PA", "START"}, {"END", "T1", "START"}},
		want:   []string{"PB", "T1"},
	}, {
		// Other keys take their deepest event: the longer branch's topic wins even
		// though it was sent first.
		name: "deepest topic wins",
		events: []fake{
			topic("T1", alice),
			message("M1", alice),
			message("M2", alice),
			topic("T2", alice),
		},
		chains: [][]string{{"END", "T1", "M2", "M1", "START"}, {"END", "T2", "START"}},
		want:   []string{"T1"},
	}, {
		// ... unless the auth rules refuse it: charlie may not set the topic.
		name: "deepest allowed topic wins",
		events: []fake{
			topic("T1", alice),
			message("M1", charlie),
			message("M2", charlie),
			topic("T2", charlie),
		},
		chains: [][]string{{"END", "T2", "M2", "M1", "START"}, {"END", "T1", "START"}},
		want:   []string{"T1"},
	}}
	useEventIDsOfEvents(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRoom(t, "1")
			got, want := r.changed(r.dag(c.events, c.chains...), c.want...)
			r.expect(got, want)
		})
	}
}
