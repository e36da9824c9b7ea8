package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"porthole/internal/hstest"
)

// TestAuthorizationMatrix walks rooms of every history visibility, join rule and guest
// access setting, with callers (guests and real users) in every membership state, and checks
// that no read endpoint returns a message the caller may not see — and that each returns
// those it may. The expected sets are written out from the rules (spec "Room History
// Visibility", Synapse's departed-user and peeking behaviour), not computed by the server's
// own visibility code.
func TestAuthorizationMatrix(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "owner")
	checked := 0
	for _, hv := range []string{"world_readable", "shared", "invited", "joined"} {
		for _, joinRule := range []string{"public", "invite"} {
			for _, guestAccess := range []string{"can_join", "forbidden"} {
				for _, scenario := range []string{"none", "invited", "joined", "left", "banned"} {
					for _, guest := range []bool{false, true} {
						canAct := !guest || guestAccess == "can_join" || scenario == "none" || scenario == "invited"
						if !canAct {
							continue
						}
						name := fmt.Sprintf("%s/%s/%s/%s/guest=%v", hv, joinRule, guestAccess, scenario, guest)
						t.Run(name, func(t *testing.T) {
							checked += checkMatrixCase(t, s, owner, hv, joinRule, guestAccess, scenario, guest)
						})
					}
				}
			}
		}
	}
	t.Logf("%d endpoint answers checked", checked)
}

func checkMatrixCase(t *testing.T, s *hstest.Server, owner *hstest.Client, hv, joinRule, guestAccess, scenario string, guest bool) int {
	var caller *hstest.Client
	if guest {
		caller = s.Guest(t)
	} else {
		caller = s.Register(t, "")
	}
	room := owner.CreateRoom(t, map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": hv}},
		{"type": "m.room.join_rules", "content": map[string]string{"join_rule": joinRule}},
		{"type": "m.room.guest_access", "content": map[string]string{"guest_access": guestAccess}},
	}})
	token := caller.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(`{"room":{"rooms":[]}}`), nil).Get("next_batch").String()
	invited := false
	owner.Send(t, room, "m0")
	if scenario != "none" && (scenario == "invited" || joinRule == "invite") {
		owner.Must(t, 200, "POST", hstest.Room(room)+"/invite", map[string]any{"user_id": caller.UserID})
		invited = true
	}
	owner.Send(t, room, "m1")
	if scenario == "joined" || scenario == "left" || scenario == "banned" {
		caller.Join(t, room)
	}
	owner.Send(t, room, "m2")
	switch scenario {
	case "left":
		caller.Must(t, 200, "POST", hstest.Room(room)+"/leave", map[string]any{})
	case "banned":
		owner.Must(t, 200, "POST", hstest.Room(room)+"/ban", map[string]any{"user_id": caller.UserID})
	}
	owner.Send(t, room, "m3")

	// What the rules allow.
	member := scenario == "joined" || scenario == "left" || scenario == "banned"
	departed := scenario == "left" || scenario == "banned"
	// memberWant is what the caller's membership history shows it (/sync's view).
	var memberWant []string
	if member {
		switch hv {
		case "world_readable", "shared":
			memberWant = []string{"m0", "m1", "m2", "m3"}
		case "invited":
			if invited {
				memberWant = []string{"m1", "m2", "m3"}
			} else {
				memberWant = []string{"m2", "m3"}
			}
		case "joined":
			memberWant = []string{"m2", "m3"}
		}
		if departed {
			memberWant = slices.DeleteFunc(memberWant, func(m string) bool { return m == "m3" })
		}
	}
	// The room read endpoints let in members and users who left (frozen at the leave); a
	// banned user is a stranger there, as in Synapse: it may only peek a world-readable room.
	readable := scenario == "joined" || scenario == "left" || hv == "world_readable"
	var want []string // visible to /messages, /event, /context, initialSync
	switch {
	case !readable:
	case scenario == "joined" || scenario == "left":
		want = memberWant
	default: // peeking a world-readable room
		want = []string{"m0", "m1", "m2", "m3"}
	}
	// /events: members stream their room; anyone else only while it is world-readable,
	// seeing what was world-readable when sent.
	var wantEvents []string
	switch {
	case scenario == "joined":
		wantEvents = want
	case hv == "world_readable":
		wantEvents = []string{"m0", "m1", "m2", "m3"}
	}
	eventsReadable := scenario == "joined" || hv == "world_readable"

	n := 0
	check := func(label string, r hstest.Response, allowed bool, wantBodies []string, path string) {
		t.Helper()
		n++
		if !allowed {
			if r.Status != 403 || r.Get("errcode").String() != "M_FORBIDDEN" {
				t.Errorf("%s: want 403 M_FORBIDDEN, got %s", label, r)
			}
			return
		}
		if r.Status != 200 {
			t.Errorf("%s: want 200, got %s", label, r)
			return
		}
		got := bodies(r, path)
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(wantBodies, ",") {
			t.Errorf("%s: messages %v, want %v", label, got, wantBodies)
		}
	}
	check("/messages", caller.Do(t, "GET", hstest.Room(room)+"/messages?dir=b&limit=100", nil), readable, want, "chunk")
	check("initialSync", caller.Do(t, "GET", hstest.Room(room)+"/initialSync?limit=100", nil), readable, want, "messages.chunk")
	check("/events", caller.Do(t, "GET", "events?timeout=0&limit=100&room_id="+url.QueryEscape(room)+"&from="+token, nil), eventsReadable, wantEvents, "chunk")
	for _, st := range []string{"/state", "/members"} {
		r := caller.Do(t, "GET", hstest.Room(room)+st, nil)
		n++
		if readable != (r.Status == 200) || (!readable && r.Status != 403) {
			t.Errorf("%s: readable=%v, got %s", st, readable, r)
		}
	}
	// Every message by ID, directly and through /context.
	msgs := owner.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=100", nil)
	for _, e := range msgs.Get("chunk").Array() {
		if e.Get("type").String() != "m.room.message" {
			continue
		}
		body, id := e.Get("content.body").String(), e.Get("event_id").String()
		visible := slices.Contains(want, body)
		r := caller.Do(t, "GET", hstest.Room(room)+"/event/"+url.PathEscape(id), nil)
		n++
		if visible != (r.Status == 200) || (!visible && r.Status != 404) {
			t.Errorf("/event %s: visible=%v, got %s", body, visible, r)
		}
		r = caller.Do(t, "GET", hstest.Room(room)+"/context/"+url.PathEscape(id)+"?limit=10", nil)
		n++
		if visible {
			got := bodies(r, "events_before")
			got = append(got, bodies(r, "events_after")...)
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Errorf("/context of %s leaked %s", body, g)
				}
			}
		} else if r.Status == 200 {
			t.Errorf("/context of invisible %s answered %s", body, r)
		}
	}
	// /sync shows a joined or departed member the same history.
	if member {
		r := caller.Must(t, 200, "GET", "sync?filter="+url.QueryEscape(`{"room":{"include_leave":true,"timeline":{"limit":100}}}`), nil)
		section := "join"
		if departed {
			section = "leave"
		}
		got := timelineBodies(r.Get("rooms." + section + "." + escapeKey(room)))
		sort.Strings(got)
		n++
		if strings.Join(got, ",") != strings.Join(memberWant, ",") {
			t.Errorf("/sync %s timeline %v, want %v", section, got, memberWant)
		}
	}
	return n
}
