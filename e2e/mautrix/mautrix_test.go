// Package mautrix_test drives a running Porthole (PORTHOLE_URL) with mautrix-go's client, the
// library bridges and bots are built on. It is a module of its own so that the server's module
// does not carry the client's dependencies. e2e/run.sh runs it against the built binary.
package mautrix_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func serverURL(t *testing.T) string {
	u := os.Getenv("PORTHOLE_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PORTHOLE_URL is not set (e2e/run.sh sets it)")
		}
		t.Skip("PORTHOLE_URL is not set: run e2e/run.sh")
	}
	return u
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func uniq(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func newClient(t *testing.T) *mautrix.Client {
	t.Helper()
	c, err := mautrix.NewClient(serverURL(t), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registered creates a user with m.login.dummy and returns a client holding its credentials.
func registered(t *testing.T) (*mautrix.Client, string, string) {
	t.Helper()
	ctx := ctxFor(t)
	c := newClient(t)
	name, password := uniq("mautrix"), "pw-mautrix-secret"
	resp, err := c.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: password, InitialDeviceDisplayName: "mautrix test"})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	c.SetCredentials(resp.UserID, resp.AccessToken)
	c.DeviceID = resp.DeviceID
	return c, name, password
}

func guest(t *testing.T) *mautrix.Client {
	t.Helper()
	c := newClient(t)
	resp, _, err := c.RegisterGuest(ctxFor(t), &mautrix.ReqRegister[any]{})
	if err != nil {
		t.Fatalf("guest registration: %v", err)
	}
	c.SetCredentials(resp.UserID, resp.AccessToken)
	return c
}

func publicRoom(t *testing.T, c *mautrix.Client, history event.HistoryVisibility, guests event.GuestAccess) id.RoomID {
	t.Helper()
	resp, err := c.CreateRoom(ctxFor(t), &mautrix.ReqCreateRoom{
		Visibility: "public", Preset: "public_chat", Name: "mautrix room", Topic: "for mautrix",
		InitialState: []*event.Event{
			{Type: event.StateHistoryVisibility, StateKey: ptr(""), Content: event.Content{Parsed: &event.HistoryVisibilityEventContent{HistoryVisibility: history}}},
			{Type: event.StateGuestAccess, StateKey: ptr(""), Content: event.Content{Parsed: &event.GuestAccessEventContent{GuestAccess: guests}}},
		},
	})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	return resp.RoomID
}

func ptr[T any](v T) *T { return &v }

func sendText(t *testing.T, c *mautrix.Client, room id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(ctxFor(t), room, body)
	if err != nil {
		t.Fatalf("send %q: %v", body, err)
	}
	return resp.EventID
}

func TestRegisterLoginWhoami(t *testing.T) {
	ctx := ctxFor(t)
	c, name, password := registered(t)
	who, err := c.Whoami(ctx)
	if err != nil || who.UserID != c.UserID || who.DeviceID != c.DeviceID {
		t.Fatalf("whoami: %+v %v (want %s %s)", who, err, c.UserID, c.DeviceID)
	}

	other := newClient(t)
	login, err := other.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name},
		Password:   password, InitialDeviceDisplayName: "second device", StoreCredentials: true,
	})
	if err != nil || login.UserID != c.UserID || login.DeviceID == c.DeviceID {
		t.Fatalf("login: %+v %v", login, err)
	}
	if who, err := other.Whoami(ctx); err != nil || who.UserID != c.UserID {
		t.Fatalf("whoami after login: %+v %v", who, err)
	}

	_, err = newClient(t).Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name}, Password: "wrong"})
	if !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("wrong password: %v, want M_FORBIDDEN", err)
	}

	devices, err := c.GetDevicesInfo(ctx)
	if err != nil || len(devices.Devices) != 2 {
		t.Fatalf("devices: %+v %v", devices, err)
	}
}

// TestSyncLoopGetsMessagesInOrderOnce runs mautrix's own sync loop (filter upload, then
// long-polls with since) and checks that every message arrives once, in order.
func TestSyncLoopGetsMessagesInOrderOnce(t *testing.T) {
	ctx := ctxFor(t)
	alice, _, _ := registered(t)
	bob, _, _ := registered(t)
	room := publicRoom(t, alice, event.HistoryVisibilityWorldReadable, event.GuestAccessCanJoin)
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatalf("join: %v", err)
	}

	want := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	var mu sync.Mutex
	var seen []string
	var presence []*event.Event
	done := make(chan struct{})
	syncer := bob.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.EventMessage, func(_ context.Context, evt *event.Event) {
		if evt.RoomID != room {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, evt.Content.AsMessage().Body)
		if len(seen) == len(want) {
			close(done)
		}
	})
	syncer.OnEventType(event.EphemeralEventPresence, func(_ context.Context, evt *event.Event) {
		mu.Lock()
		presence = append(presence, evt)
		mu.Unlock()
	})
	syncErr := make(chan error, 1)
	go func() { syncErr <- bob.SyncWithContext(ctx) }()

	for _, body := range want {
		sendText(t, alice, room, body)
	}
	select {
	case <-done:
	case err := <-syncErr:
		t.Fatalf("sync loop ended: %v", err)
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("timed out; saw %v", seen)
	}
	// Another message wakes the loop's next long-poll; nothing may be repeated.
	sendText(t, alice, room, "last")
	deadline := time.After(10 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n > len(want) {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the last message never arrived")
		case <-time.After(20 * time.Millisecond):
		}
	}
	bob.StopSync()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, append(want, "last")) {
		t.Fatalf("the sync loop delivered %v, want %v then last", seen, want)
	}
	for _, p := range presence {
		if p.Content.AsPresence().Presence == "" {
			t.Errorf("a presence event mautrix could not read: %s", p.Content.VeryRaw)
		}
	}
}

func TestMessagesBackwardsAndForwards(t *testing.T) {
	ctx := ctxFor(t)
	alice, _, _ := registered(t)
	room := publicRoom(t, alice, event.HistoryVisibilityShared, event.GuestAccessForbidden)
	var want []string
	for i := range 11 {
		want = append(want, "page "+string(rune('a'+i)))
		sendText(t, alice, room, want[i])
	}
	texts := func(chunk []*event.Event) []string {
		var out []string
		for _, e := range chunk {
			if e.Type == event.EventMessage {
				if err := e.Content.ParseRaw(e.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
					t.Fatalf("unparsable message %s: %v", e.ID, err)
				}
				out = append(out, e.Content.AsMessage().Body)
			}
		}
		return out
	}

	var back []string
	from := ""
	for range 30 {
		page, err := alice.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 3)
		if err != nil {
			t.Fatalf("messages back from %q: %v", from, err)
		}
		back = append(back, texts(page.Chunk)...)
		if len(page.Chunk) == 0 || page.End == "" {
			break
		}
		from = page.End
	}
	slices.Reverse(back)
	if !slices.Equal(back, want) {
		t.Fatalf("backwards: %v, want %v", back, want)
	}

	var fwd []string
	for range 30 {
		page, err := alice.Messages(ctx, room, from, "", mautrix.DirectionForward, nil, 4)
		if err != nil {
			t.Fatalf("messages forward from %q: %v", from, err)
		}
		fwd = append(fwd, texts(page.Chunk)...)
		if len(page.Chunk) == 0 || page.End == "" {
			break
		}
		from = page.End
	}
	if !slices.Equal(fwd, want) {
		t.Fatalf("forwards: %v, want %v", fwd, want)
	}
}

func TestStateReadBack(t *testing.T) {
	ctx := ctxFor(t)
	alice, _, _ := registered(t)
	room := publicRoom(t, alice, event.HistoryVisibilityWorldReadable, event.GuestAccessCanJoin)
	if _, err := alice.SendStateEvent(ctx, room, event.StateTopic, "", &event.TopicEventContent{Topic: "changed"}); err != nil {
		t.Fatal(err)
	}
	state, err := alice.State(ctx, room)
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	if hv := state[event.StateHistoryVisibility][""]; hv == nil || hv.Content.AsHistoryVisibility().HistoryVisibility != event.HistoryVisibilityWorldReadable {
		t.Fatalf("history visibility: %+v", hv)
	}
	if tp := state[event.StateTopic][""]; tp == nil || tp.Content.AsTopic().Topic != "changed" {
		t.Fatalf("topic: %+v", tp)
	}
	if m := state[event.StateMember][alice.UserID.String()]; m == nil || m.Content.AsMember().Membership != event.MembershipJoin {
		t.Fatalf("own membership: %+v", m)
	}
	var name event.RoomNameEventContent
	if err := alice.StateEvent(ctx, room, event.StateRoomName, "", &name); err != nil || name.Name != "mautrix room" {
		t.Fatalf("name: %+v %v", name, err)
	}
	var nothing map[string]any
	if err := alice.StateEvent(ctx, room, event.NewEventType("m.room.nothing"), "", &nothing); !errors.Is(err, mautrix.MNotFound) {
		t.Fatalf("missing state: %v, want M_NOT_FOUND", err)
	}
	members, err := alice.JoinedMembers(ctx, room)
	if err != nil || len(members.Joined) != 1 {
		t.Fatalf("joined members: %+v %v", members, err)
	}
}

func TestGuestReadsWorldReadableRoomWithoutJoining(t *testing.T) {
	ctx := ctxFor(t)
	alice, _, _ := registered(t)
	room := publicRoom(t, alice, event.HistoryVisibilityWorldReadable, event.GuestAccessCanJoin)
	sendText(t, alice, room, "for everyone")
	g := guest(t)
	page, err := g.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatalf("guest /messages: %v", err)
	}
	found := false
	for _, e := range page.Chunk {
		if e.Type == event.EventMessage {
			_ = e.Content.ParseRaw(e.Type)
			found = found || e.Content.AsMessage().Body == "for everyone"
		}
	}
	if !found {
		t.Fatalf("the guest did not see the message: %+v", page.Chunk)
	}
	if _, err := g.State(ctx, room); err != nil {
		t.Fatalf("guest state: %v", err)
	}
	joined, err := g.JoinedRooms(ctx)
	if err != nil || slices.Contains(joined.JoinedRooms, room) {
		t.Fatalf("the guest joined by reading: %+v %v", joined, err)
	}
}

func TestGuestRefusedSharedHistoryRoom(t *testing.T) {
	ctx := ctxFor(t)
	alice, _, _ := registered(t)
	room := publicRoom(t, alice, event.HistoryVisibilityShared, event.GuestAccessCanJoin)
	sendText(t, alice, room, "members only")
	g := guest(t)
	if _, err := g.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 10); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("guest /messages of a shared room: %v, want M_FORBIDDEN", err)
	}
	if _, err := g.State(ctx, room); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("guest state of a shared room: %v, want M_FORBIDDEN", err)
	}
}

func TestGuestJoinsCanJoinRoomAndPosts(t *testing.T) {
	ctx := ctxFor(t)
	alice, _, _ := registered(t)
	room := publicRoom(t, alice, event.HistoryVisibilityShared, event.GuestAccessCanJoin)
	g := guest(t)
	if _, err := g.JoinRoomByID(ctx, room); err != nil {
		t.Fatalf("guest join: %v", err)
	}
	eventID := sendText(t, g, room, "hello from a guest")
	page, err := alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 5)
	if err != nil {
		t.Fatal(err)
	}
	var got *event.Event
	for _, e := range page.Chunk {
		if e.ID == eventID {
			got = e
		}
	}
	if got == nil || got.Sender != g.UserID {
		t.Fatalf("the guest's message is not in the room: %+v", page.Chunk)
	}

	closed := publicRoom(t, alice, event.HistoryVisibilityShared, event.GuestAccessForbidden)
	if _, err := g.JoinRoomByID(ctx, closed); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("guest join of a forbidden room: %v, want M_FORBIDDEN", err)
	}
}
