package appservice_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"porthole/internal/hstest"
)

// aliasCreator answers alias queries as a bridge would: it makes the room with its bot.
type aliasCreator struct {
	as      *mas.AppService
	created atomic.Value // id.RoomID
}

func (q *aliasCreator) QueryAlias(alias id.RoomAlias) bool {
	local := strings.TrimPrefix(strings.TrimSuffix(string(alias), ":localhost"), "#")
	resp, err := q.as.BotIntent().CreateRoom(context.Background(), &mautrix.ReqCreateRoom{
		RoomAliasName: local, Preset: "public_chat", Name: "Bridged " + local,
	})
	if err != nil {
		return false
	}
	q.created.Store(resp.RoomID)
	return true
}

func (q *aliasCreator) QueryUser(userID id.UserID) bool {
	return q.as.Intent(userID).EnsureRegistered(context.Background()) == nil
}

// TestMautrixAppService runs a service built on mautrix-go's appservice package, the
// framework of the mautrix bridges, against the server: its generated registration
// loads, its bot and ghosts register and act through the as_token, it receives
// transactions through its own handler, answers alias and user queries, and its ping
// of itself works.
func TestMautrixAppService(t *testing.T) {
	var handler atomic.Value // http.Handler, set once the service exists
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := handler.Load().(http.Handler); ok {
			h.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(503)
	}))
	defer srv.Close()

	reg := mas.CreateRegistration()
	reg.ID, reg.URL, reg.SenderLocalpart = "mxbridge", srv.URL, "mxbot"
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(`@mx_.*:localhost`), true)
	reg.Namespaces.RoomAliases.Register(regexp.MustCompile(`#mx_.*:localhost`), true)
	reg.EphemeralEvents = true
	path := filepath.Join(t.TempDir(), "mautrix-registration.yaml")
	if err := reg.Save(path); err != nil {
		t.Fatal(err)
	}
	s := hstest.New(t, withServices(path))

	as, err := mas.CreateFull(mas.CreateOpts{Registration: reg, HomeserverDomain: "localhost", HomeserverURL: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	queries := &aliasCreator{as: as}
	as.QueryHandler = queries
	handler.Store(http.Handler(as.Router))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if !as.BotIntent().EnsureAppserviceConnection(ctx) {
		t.Fatal("the service's ping through the homeserver failed")
	}
	if err := as.BotIntent().EnsureRegistered(ctx); err != nil {
		t.Fatalf("the bot (the sender, which exists already): %v", err)
	}
	ghost := as.Intent("@mx_alice:localhost")
	if err := ghost.EnsureRegistered(ctx); err != nil {
		t.Fatalf("registering a ghost: %v", err)
	}
	if err := ghost.SetDisplayName(ctx, "Alice (bridged)"); err != nil {
		t.Fatalf("naming the ghost: %v", err)
	}
	if who, err := ghost.Whoami(ctx); err != nil || who.UserID != "@mx_alice:localhost" {
		t.Fatalf("whoami as the ghost: %v %v", who, err)
	}

	// A user of the server talks with the ghost; the service hears it in transactions.
	bob := s.Register(t, "bob")
	room := bob.CreateRoom(t, map[string]any{"preset": "public_chat", "invite": []string{"@mx_alice:localhost"}})
	waitFor := func(what string, pick func(*event.Event) bool) *event.Event {
		t.Helper()
		for {
			select {
			case ev := <-as.Events:
				if pick(ev) {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the ghost's invite", func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == "@mx_alice:localhost" && ev.Content.AsMember().Membership == event.MembershipInvite
	})
	if err := ghost.EnsureJoined(ctx, id.RoomID(room)); err != nil {
		t.Fatalf("the ghost joining: %v", err)
	}
	sent := bob.Send(t, room, "hello, bridge")
	got := waitFor("bob's message", func(ev *event.Event) bool { return ev.ID == id.EventID(sent) })
	if got.Content.AsMessage().Body != "hello, bridge" || got.RoomID != id.RoomID(room) {
		t.Errorf("the service got %+v", got)
	}
	// The ghost answers with a massaged timestamp, as bridges do for the remote time.
	resp, err := ghost.SendMassagedMessageEvent(ctx, id.RoomID(room), event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "hi from the other side"}, 1600000000000)
	if err != nil {
		t.Fatalf("the ghost sending: %v", err)
	}
	if ev := bob.Must(t, 200, "GET", hstest.Room(room)+"/event/"+string(resp.EventID), nil); ev.Get("origin_server_ts").Int() != 1600000000000 || ev.Get("sender").String() != "@mx_alice:localhost" {
		t.Errorf("the ghost's message: %s", ev)
	}

	// Queries: an alias of its namespace is made on demand; a ghost is registered on demand.
	joined := bob.Must(t, 200, "POST", "join/"+"%23mx_lobby:localhost", map[string]any{}).Get("room_id").String()
	if c, _ := queries.created.Load().(id.RoomID); joined == "" || c != id.RoomID(joined) {
		t.Errorf("joined %s; the service created %v", joined, c)
	}
	if p := bob.Must(t, 200, "GET", "profile/@mx_carol:localhost", nil); p.Status != 200 {
		t.Errorf("profile of a ghost made on demand: %s", p)
	}
	// Ephemeral data reaches its handler (receive_ephemeral).
	bob.Must(t, 200, "PUT", hstest.Room(room)+"/typing/@bob:localhost", map[string]any{"typing": true, "timeout": 5000})
	waitFor("bob typing", func(ev *event.Event) bool {
		return ev.Type == event.EphemeralEventTyping && ev.RoomID == id.RoomID(room)
	})
}
