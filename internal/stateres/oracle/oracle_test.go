package oracle

import (
	"encoding/json/v2"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix/id"

	"porthole/internal/stateres"
)

// seed is the first seed; fork i uses seed+i, printed with any disagreement.
const seed = 20261204

// forks is how many random forks the test resolves.
const forks = 3000

// Every fork is resolved by internal/stateres and by the plain transcription of the
// spec in ref_test.go, which must agree. Those of room versions up to 11 are also
// resolved by gomatrixserverlib: at the pinned version it departs from the spec in ways
// that change the answer for over a third of the forks (see quirks; its v2.1, for room
// version 12, panics on most forks), so where it differs, the transcription with its
// departures switched on must give its answer; a few forks differ otherwise (listed),
// and that must stay rare. ORACLE_SEED=n runs one fork.
func TestAgainstIndependentResolvers(t *testing.T) {
	versions := []id.RoomVersion{"6", "8", "9", "10", "11", "12"}
	compared, agree, explained := 0, 0, 0
	needed := map[string]int{}
	var unexplained []uint64
	for i := range forks {
		if only := os.Getenv("ORACLE_SEED"); only != "" && only != fmt.Sprint(seed+i) {
			continue
		}
		s := uint64(seed + i)
		version := versions[i%len(versions)]
		g := newGenRoom(rand.New(rand.NewPCG(s, s)), version)
		sets := g.fork()
		ours, err := stateres.Resolve(version, sets, g.fetch, nil)
		if err != nil {
			t.Fatalf("seed %d (room version %s): ours: %v", s, version, err)
		}
		spec := (&ref{version: version, pdus: g.pdus}).resolve(sets)
		if !same(ours, spec) {
			t.Errorf("seed %d (room version %s): ours and the plain transcription of the spec differ\n%s", s, version, g.diff(sets, ours, spec))
			continue
		}
		if version.StateResVersion() == id.StateResV2_1 {
			continue
		}
		theirs, err := g.gmslResolve(sets)
		if err != nil {
			t.Fatalf("seed %d (room version %s): gomatrixserverlib: %v", s, version, err)
		}
		compared++
		if same(ours, theirs) {
			agree++
			continue
		}
		if !same((&ref{version: version, pdus: g.pdus, q: gmslQuirks}).resolve(sets), theirs) {
			unexplained = append(unexplained, s)
			if len(unexplained) <= 3 {
				t.Logf("seed %d (room version %s): gomatrixserverlib differs otherwise\n%s", s, version, g.diff(sets, ours, theirs))
			}
			continue
		}
		explained++
		for name, q := range quirkSwitches() {
			if !same((&ref{version: version, pdus: g.pdus, q: q}).resolve(sets), theirs) {
				needed[name]++
			}
		}
	}
	if compared > 0 && len(unexplained)*20 > compared {
		t.Errorf("gomatrixserverlib differs from us, and not by its known departures, on %d of %d forks (more than 5%%): %v",
			len(unexplained), compared, unexplained)
	}
	t.Logf("%d forks: ours equals the plain transcription of the spec in all of them", forks)
	t.Logf("gomatrixserverlib on %d of them (room versions 6–11): the same answer in %d; a different one in %d that its "+
		"departures from the spec reproduce (each needed in: %v); a different one otherwise in %d",
		compared, agree, explained, needed, len(unexplained))
}

// quirkSwitches are gmslQuirks each with one departure switched off, by name.
func quirkSwitches() map[string]quirks {
	out := map[string]quirks{}
	for _, name := range []string{"selfExcluded", "narrowPowerSet", "reverseKahn", "noCreatorPower", "selfAsAuthEvent", "mainlineSteps", "leaveAfterLeave"} {
		q := gmslQuirks
		switch name {
		case "selfExcluded":
			q.selfExcluded = false
		case "narrowPowerSet":
			q.narrowPowerSet = false
		case "reverseKahn":
			q.reverseKahn = false
		case "noCreatorPower":
			q.noCreatorPower = false
		case "selfAsAuthEvent":
			q.selfAsAuthEvent = false
		case "mainlineSteps":
			q.mainlineSteps = false
		case "leaveAfterLeave":
			q.leaveAfterLeave = false
		}
		out[name] = q
	}
	return out
}

func (g *genRoom) gmslResolve(sets []stateres.StateMap) (stateres.StateMap, error) {
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(g.version))
	if err != nil {
		return nil, err
	}
	events := map[id.EventID]gmsl.PDU{}
	for _, x := range g.order {
		p := g.pdus[x]
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		ev, err := verImpl.NewEventFromTrustedJSON(raw, false)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", x, err)
		}
		if ev.EventID() != string(x) {
			return nil, fmt.Errorf("gomatrixserverlib computes %s for %s", ev.EventID(), x)
		}
		events[x] = ev
	}
	var all []gmsl.PDU
	for _, x := range g.order {
		all = append(all, events[x])
	}
	var stateSets [][]gmsl.PDU
	for _, s := range sets {
		var list []gmsl.PDU
		for _, x := range sortedIDs(s) {
			list = append(list, events[x])
		}
		stateSets = append(stateSets, list)
	}
	userID := func(_ spec.RoomID, sender spec.SenderID) (*spec.UserID, error) {
		return spec.NewUserID(string(sender), true)
	}
	resolved, err := gmsl.ResolveConflictsNew(gmsl.RoomVersion(g.version), stateSets, all, userID, func(string) bool { return false })
	if err != nil {
		return nil, err
	}
	out := stateres.StateMap{}
	for _, ev := range resolved {
		out[stateres.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = id.EventID(ev.EventID())
	}
	return out, nil
}

func sortedIDs(s stateres.StateMap) []id.EventID {
	var out []id.EventID
	for _, x := range s {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}

func same(a, b stateres.StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// diff shows the keys where the resolutions differ, with the candidates of each set.
func (g *genRoom) diff(sets []stateres.StateMap, ours, theirs stateres.StateMap) string {
	keys := map[stateres.StateKey]bool{}
	for k, v := range ours {
		if theirs[k] != v {
			keys[k] = true
		}
	}
	for k, v := range theirs {
		if ours[k] != v {
			keys[k] = true
		}
	}
	var lines []string
	for k := range keys {
		line := fmt.Sprintf("  %s/%s: ours %s, theirs %s; sets:", k.Type, k.StateKey, g.describe(ours[k]), g.describe(theirs[k]))
		for _, s := range sets {
			line += " " + g.describe(s[k])
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (g *genRoom) describe(x id.EventID) string {
	if x == "" {
		return "-"
	}
	p := g.pdus[x]
	return fmt.Sprintf("%s[%s %s ts%d d%d]", string(x)[:6], p.Sender, p.Content, p.OriginServerTS%10000, p.Depth)
}
