package appservice_test

import (
	"net/url"
	"testing"

	"porthole/internal/hstest"
)

// TestEphemeralData: services that ask for it get typing, receipts and presence of the
// rooms and users they are interested in, and to-device messages to their users, in
// the spec's field (receive_ephemeral) or MSC2409's (push_ephemeral); others get none.
func TestEphemeralData(t *testing.T) {
	stable := newFakeService(t, "stable")
	unstable := newFakeService(t, "unstable")
	plain := newFakeService(t, "plain")
	ns := func(prefix string) string {
		return "  users:\n    - exclusive: true\n      regex: '@" + prefix + "_.*:localhost'\n"
	}
	s := hstest.New(t, withServices(
		stable.registration(t, ns("st"), "receive_ephemeral: true\n"),
		unstable.registration(t, ns("un"), "de.sorunome.msc2409.push_ephemeral: true\n"),
		plain.registration(t, ns("pl"))))
	alice := s.Register(t, "alice")
	carol := s.Register(t, "carol") // shares no room with the services' users
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	lonely := carol.CreateRoom(t, nil)
	ghosts := map[*fakeService]*hstest.Client{}
	for f, name := range map[*fakeService]string{stable: "st_g", unstable: "un_g", plain: "pl_g"} {
		g := f.register(t, s, name)
		g.Must(t, 200, "POST", masq("join/"+url.PathEscape(room), g.UserID), map[string]any{})
		ghosts[f] = g
	}
	ev := alice.Send(t, room, "hello")

	alice.Must(t, 200, "PUT", hstest.Room(room)+"/typing/"+url.PathEscape(alice.UserID), map[string]any{"typing": true, "timeout": 10000})
	carol.Must(t, 200, "PUT", hstest.Room(lonely)+"/typing/"+url.PathEscape(carol.UserID), map[string]any{"typing": true, "timeout": 10000})
	alice.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read.private/"+url.PathEscape(ev), map[string]any{})
	alice.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read/"+url.PathEscape(ev), map[string]any{})
	g := ghosts[stable]
	g.Must(t, 200, "POST", masq(hstest.Room(room)+"/receipt/m.read.private/"+url.PathEscape(ev), g.UserID), map[string]any{})
	carol.Must(t, 200, "PUT", "presence/"+url.PathEscape(carol.UserID)+"/status", map[string]any{"presence": "online"})
	alice.Must(t, 200, "PUT", "presence/"+url.PathEscape(alice.UserID)+"/status", map[string]any{"presence": "online", "status_msg": "here"})

	// A to-device message to the stable service's user's device.
	login := stable.client(s).Must(t, 200, "POST", "login", map[string]any{"type": "m.login.application_service", "identifier": map[string]any{"type": "m.id.user", "user": g.UserID}})
	dev := login.Get("device_id").String()
	alice.Must(t, 200, "PUT", "sendToDevice/org.example.ping/td1", map[string]any{"messages": map[string]any{g.UserID: map[string]any{dev: map[string]any{"n": 1}}}})

	for _, c := range []struct {
		f     *fakeService
		field string
	}{{stable, "ephemeral"}, {unstable, "unstable"}} {
		c.f.waitEphemeral(t, c.field, "alice typing", func(e map[string]any) bool {
			return e["type"] == "m.typing" && e["room_id"] == room
		})
		c.f.waitEphemeral(t, c.field, "alice's public receipt", func(e map[string]any) bool {
			return e["type"] == "m.receipt" && e["room_id"] == room && has(e, "content", ev, "m.read", alice.UserID)
		})
		c.f.waitEphemeral(t, c.field, "alice's presence", func(e map[string]any) bool {
			return e["type"] == "m.presence" && e["sender"] == alice.UserID
		})
	}
	stable.waitEphemeral(t, "ephemeral", "its user's private receipt", func(e map[string]any) bool {
		return e["type"] == "m.receipt" && has(e, "content", ev, "m.read.private", g.UserID)
	})
	td := stable.waitEphemeral(t, "to_device", "the to-device message", func(e map[string]any) bool { return e["type"] == "org.example.ping" })
	if td["to_user_id"] != g.UserID || td["to_device_id"] != dev || td["sender"] != alice.UserID {
		t.Errorf("to-device message: %v", td)
	}
	// What they must not get, queued before what they got last.
	sentinel := alice.Send(t, room, "last")
	for _, f := range []*fakeService{stable, unstable, plain} {
		f.waitEvent(t, "the last message", byID(sentinel))
	}
	for _, c := range []struct {
		f     *fakeService
		field string
	}{{stable, "ephemeral"}, {unstable, "unstable"}} {
		for _, tx := range c.f.transactions() {
			list := tx.Ephemeral
			if c.field == "unstable" {
				list = tx.UnstableEphemeral
			}
			for _, e := range list {
				if e["room_id"] == lonely || (e["type"] == "m.presence" && e["sender"] == carol.UserID) {
					t.Errorf("%s got carol's %v", c.f.id, e)
				}
				if e["type"] == "m.receipt" && has(e, "content", ev, "m.read.private", alice.UserID) {
					t.Errorf("%s got alice's private receipt", c.f.id)
				}
			}
		}
	}
	if n := unstable.ephemeralCount("to_device"); len(n) != 0 {
		t.Errorf("unstable got to-device messages for another service's user: %v", n)
	}
	for _, field := range []string{"ephemeral", "unstable", "to_device"} {
		if n := plain.ephemeralCount(field); len(n) != 0 {
			t.Errorf("the service without ephemeral got %s: %v", field, n)
		}
	}
	if n := stable.ephemeralCount("unstable"); len(n) != 0 {
		t.Errorf("stable got the unstable field too: %v", n)
	}
}

// has follows keys into nested objects.
func has(m map[string]any, keys ...string) bool {
	var cur any = m
	for _, k := range keys {
		o, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = o[k]; !ok {
			return false
		}
	}
	return true
}
