package client_test

import (
	"net/url"
	"regexp"
	"strconv"
	"testing"

	"porthole/internal/hstest"
)

// roomVersions are every room version Porthole creates.
var roomVersions = []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}

// eventIDForm is the event ID format of each room version: chosen by the server in v1
// and v2, the reference hash in base64 in v3 and in URL-safe base64 from v4 on.
func eventIDForm(version string) *regexp.Regexp {
	switch version {
	case "1", "2":
		return regexp.MustCompile(`^\$[A-Za-z0-9_-]+:localhost$`)
	case "3":
		return regexp.MustCompile(`^\$[A-Za-z0-9+/]{43}$`)
	}
	return regexp.MustCompile(`^\$[A-Za-z0-9_-]{43}$`)
}

// A room of every version works end to end: creation, messages, state, redactions, the
// auth rules, and every read path (/sync, /messages, /context, /event, /state).
func TestRoomVersions(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	member := s.Register(t, "")
	caps := owner.Must(t, 200, "GET", "capabilities", nil).Get("capabilities.m\\.room_versions")
	if caps.Get("default").String() != "10" {
		t.Errorf("default room version: %s", caps)
	}
	for _, version := range roomVersions {
		t.Run("v"+version, func(t *testing.T) {
			if caps.Get("available."+version).String() != "stable" {
				t.Errorf("capabilities do not list v%s as stable: %s", version, caps)
			}
			form := eventIDForm(version)
			room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": version, "name": "v" + version})
			member.Join(t, room)
			create := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.create/?format=event", nil)
			if create.Get("content.room_version").String() != version || !form.MatchString(create.Get("event_id").String()) {
				t.Fatalf("create event: %s", create)
			}
			// The creator is named in the content up to v10, by the sender from v11 on.
			if n, _ := strconv.Atoi(version); create.Get("content.creator").Exists() != (n <= 10) {
				t.Errorf("creator in the content of a v%s create event: %s", version, create)
			}
			msg := member.Send(t, room, "hello")
			topic := owner.SetState(t, room, "m.room.topic", "", map[string]string{"topic": "versions"})
			gone := member.Send(t, room, "regret")
			for _, eid := range []string{msg, topic, gone} {
				if !form.MatchString(eid) {
					t.Errorf("event ID %q is not of the v%s form", eid, version)
				}
			}
			// The auth rules of every version: a member without power may not set state.
			member.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/state/m.room.name/", map[string]string{"name": "mine"})
			// Redactions: the target at the top level up to v10, in content from v11 on;
			// clients see both.
			red := member.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(gone)+"/r1", map[string]any{"reason": "oops"}).Get("event_id").String()
			redEv := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(red), nil)
			if redEv.Get("redacts").String() != gone || redEv.Get("content.redacts").String() != gone {
				t.Errorf("redaction event: %s", redEv)
			}
			pruned := owner.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(gone), nil)
			if pruned.Get("content").Raw != "{}" || pruned.Get("unsigned.redacted_because.event_id").String() != red {
				t.Errorf("redacted event: %s", pruned)
			}
			// Read paths.
			sync := owner.Must(t, 200, "GET", "sync", nil)
			tl := sync.Get("rooms.join." + escapeKey(room) + ".timeline.events")
			if len(tl.Array()) == 0 {
				t.Fatalf("no timeline in /sync: %s", sync)
			}
			found := map[string]bool{}
			for _, ev := range tl.Array() {
				found[ev.Get("event_id").String()] = true
				if ev.Get("type").String() == "m.room.create" && ev.Get("content.room_version").String() != version {
					t.Errorf("create event in /sync: %s", ev)
				}
			}
			for _, eid := range []string{msg, topic, gone, red} {
				if !found[eid] {
					t.Errorf("/sync timeline lacks %s: %s", eid, tl)
				}
			}
			msgs := owner.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=50", nil)
			var types []string
			for _, ev := range msgs.Get("chunk").Array() {
				types = append(types, ev.Get("type").String())
			}
			if len(types) == 0 || types[len(types)-1] != "m.room.create" || types[0] != "m.room.redaction" {
				t.Errorf("/messages: %v", types)
			}
			ctx := member.Must(t, 200, "GET", hstest.Room(room)+"/context/"+url.PathEscape(topic)+"?limit=2", nil)
			if ctx.Get("event.event_id").String() != topic || ctx.Get("events_before.0.event_id").String() != msg ||
				ctx.Get("events_after.0.event_id").String() != gone {
				t.Errorf("/context: %s", ctx)
			}
			if got := stateContent(t, member, room, "m.room.topic", "").Get("topic").String(); got != "versions" {
				t.Errorf("topic %q", got)
			}
			// Each version's redaction algorithm: from v11 on, power levels keep "invite".
			pl := owner.Must(t, 200, "GET", hstest.Room(room)+"/state/m.room.power_levels/?format=event", nil).Get("event_id").String()
			owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(pl)+"/r2", map[string]any{})
			after := stateContent(t, owner, room, "m.room.power_levels", "")
			n, _ := strconv.Atoi(version)
			if after.Get("invite").Exists() != (n >= 11) || after.Get("notifications").Exists() || !after.Get("events").Exists() {
				t.Errorf("redacted v%s power levels: %s", version, after)
			}
			// The room goes on after that (the owner keeps its power).
			owner.SetState(t, room, "m.room.name", "", map[string]string{"name": "still here"})
			member.Send(t, room, "still talking")
		})
	}
}
