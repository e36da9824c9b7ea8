package client_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/hstest"
)

// counts is a user's unread counts in a room from an initial /sync.
func counts(t *testing.T, c *hstest.Client, roomID string) (notify, highlight int64) {
	t.Helper()
	r := c.Must(t, 200, "GET", "sync?timeout=0", nil)
	u := joinedRoom(r, roomID).Get("unread_notifications")
	if !u.Exists() {
		t.Fatalf("no unread_notifications for %s: %s", roomID, r)
	}
	return u.Get("notification_count").Int(), u.Get("highlight_count").Int()
}

func wantCounts(t *testing.T, c *hstest.Client, roomID string, n, h int64) {
	t.Helper()
	gn, gh := counts(t, c, roomID)
	if gn != n || gh != h {
		t.Fatalf("%s's counts: %d notifications, %d highlights; want %d, %d", c.UserID, gn, gh, n, h)
	}
}

func receipt(t *testing.T, c *hstest.Client, roomID, eventID string, body map[string]any) {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	c.Must(t, 200, "POST", hstest.Room(roomID)+"/receipt/m.read/"+url.PathEscape(eventID), body)
}

func pushRule(t *testing.T, c *hstest.Client, kind, ruleID string, body map[string]any) {
	t.Helper()
	c.Must(t, 200, "PUT", "pushrules/global/"+kind+"/"+url.PathEscape(ruleID), body)
}

func TestUnreadCountsFollowPushRules(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "bob")
	carol := s.Register(t, "carol")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "name": "Counts"})
	bob.Join(t, room)
	carol.Join(t, room)
	wantCounts(t, alice, room, 0, 0)

	bob.Send(t, room, "hello")
	wantCounts(t, alice, room, 1, 0)
	wantCounts(t, bob, room, 0, 0) // own messages never count

	// .m.rule.suppress_notices
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.notice", "body": "a bot speaks, alice"})
	wantCounts(t, alice, room, 1, 0)

	// .m.rule.is_user_mention highlights only the mentioned user.
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "lunch?", "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
	wantCounts(t, alice, room, 2, 1)
	wantCounts(t, carol, room, 2, 0)

	// The legacy body rule (no m.mentions): alice's localpart as a word.
	bob.Send(t, room, "ask Alice about it")
	wantCounts(t, alice, room, 3, 2)
	// ...but not inside a word, nor when the event has m.mentions.
	bob.Send(t, room, "malice aforethought")
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "alice", "m.mentions": map[string]any{}})
	wantCounts(t, alice, room, 5, 2)

	// @room from someone allowed to (the default power levels let moderators and up, 50).
	alice.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "all", "m.mentions": map[string]any{"room": true}})
	wantCounts(t, bob, room, 1, 1) // the first message from someone else
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "all", "m.mentions": map[string]any{"room": true}})
	wantCounts(t, alice, room, 6, 2) // bob (0) may not @room: a plain message

	// Muting the room (a room rule with dont_notify): messages stop counting, mentions still
	// highlight (override rules come first).
	pushRule(t, alice, "room", room, map[string]any{"actions": []any{"dont_notify"}})
	bob.Send(t, room, "muted")
	wantCounts(t, alice, room, 6, 2)
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "hey", "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
	wantCounts(t, alice, room, 7, 3)

	// A sender rule with empty actions mutes one sender for carol.
	pushRule(t, carol, "sender", bob.UserID, map[string]any{"actions": []any{}})
	before, _ := counts(t, carol, room)
	bob.Send(t, room, "not counted for the one who muted me")
	if n, _ := counts(t, carol, room); n != before {
		t.Fatalf("carol muted bob but got a notification: %d → %d", before, n)
	}

	// A keyword rule of carol's (content rule) highlights.
	pushRule(t, carol, "content", "pizza", map[string]any{"pattern": "pizz?", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}})
	_, hl0 := counts(t, carol, room)
	alice.Send(t, room, "Pizza tonight?")
	if _, hl := counts(t, carol, room); hl != hl0+1 {
		t.Fatalf("carol's keyword should highlight: %d → %d highlights", hl0, hl)
	}

	// A receipt resets the count; m.read.private does too.
	last := bob.Send(t, room, "read me")
	receipt(t, alice, room, last, nil)
	wantCounts(t, alice, room, 0, 0)
	bob.Send(t, room, "after the receipt")
	wantCounts(t, alice, room, 0, 0) // muted room
	alice.Must(t, 200, "DELETE", "pushrules/global/room/"+url.PathEscape(room), nil)
	last = bob.Send(t, room, "unmuted")
	wantCounts(t, alice, room, 1, 0)
	alice.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read.private/"+url.PathEscape(last), map[string]any{})
	wantCounts(t, alice, room, 0, 0)

	// A redacted message no longer counts.
	spam := bob.Send(t, room, "spam")
	wantCounts(t, alice, room, 1, 0)
	bob.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(spam)+"/r1", map[string]any{})
	wantCounts(t, alice, room, 0, 0)
}

func TestDirectMessageNotifiesWithSound(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	dm := alice.CreateRoom(t, map[string]any{"preset": "trusted_private_chat", "invite": []string{bob.UserID}, "is_direct": true})
	bob.Join(t, dm)
	bob.Send(t, dm, "psst")
	wantCounts(t, alice, dm, 1, 0)
	r := alice.Must(t, 200, "GET", "notifications", nil)
	n := r.Get("notifications.0")
	if n.Get("event.content.body").String() != "psst" || n.Get("actions").Raw != `["notify",{"set_tweak":"sound","value":"default"}]` {
		t.Fatalf(".m.rule.room_one_to_one: %s", r)
	}
	// Bob's invite notified him (.m.rule.invite_for_me) before he joined.
	r = bob.Must(t, 200, "GET", "notifications", nil)
	var invite gjson.Result
	for _, n := range r.Get("notifications").Array() {
		if n.Get("event.type").String() == "m.room.member" {
			invite = n
		}
	}
	if invite.Get("event.content.membership").String() != "invite" || !strings.Contains(invite.Get("actions").Raw, "notify") {
		t.Fatalf("invite notification: %s", r)
	}
}

func TestNotificationsAPI(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	first := bob.Send(t, room, "one")
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "two", "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
	bob.Send(t, room, "three")
	r := alice.Must(t, 200, "GET", "notifications", nil)
	ns := r.Get("notifications").Array()
	if len(ns) != 3 || ns[0].Get("event.content.body").String() != "three" || ns[2].Get("event.content.body").String() != "one" {
		t.Fatalf("notifications: %s", r)
	}
	for _, n := range ns {
		if n.Get("read").Bool() || n.Get("room_id").String() != room || n.Get("ts").Int() == 0 || !n.Get("profile_tag").Exists() {
			t.Fatalf("notification fields: %s", n.Raw)
		}
	}
	if r.Get("next_token").Exists() {
		t.Errorf("a complete page has no next_token: %s", r)
	}
	// only=highlight
	r = alice.Must(t, 200, "GET", "notifications?only=highlight", nil)
	if ns := r.Get("notifications").Array(); len(ns) != 1 || ns[0].Get("event.content.body").String() != "two" ||
		!strings.Contains(ns[0].Get("actions").Raw, "highlight") {
		t.Fatalf("only=highlight: %s", r)
	}
	// Pages of one.
	var bodies []string
	from := ""
	for i := 0; i < 5; i++ {
		path := "notifications?limit=1"
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := alice.Must(t, 200, "GET", path, nil)
		for _, n := range r.Get("notifications").Array() {
			bodies = append(bodies, n.Get("event.content.body").String())
		}
		from = r.Get("next_token").String()
		if from == "" {
			break
		}
	}
	if strings.Join(bodies, ",") != "three,two,one" {
		t.Fatalf("paged: %v", bodies)
	}
	// A receipt marks them read.
	receipt(t, alice, room, first, nil)
	r = alice.Must(t, 200, "GET", "notifications", nil)
	ns = r.Get("notifications").Array()
	if ns[2].Get("read").Bool() != true || ns[0].Get("read").Bool() {
		t.Fatalf("read flags after a receipt on the first: %s", r)
	}
	// Bad parameters.
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", "notifications?limit=lots", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", "notifications?from=nonsense", nil)
	guest := s.Guest(t)
	guest.MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", "notifications", nil)
}

func TestUnreadThreadNotifications(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	root := bob.Send(t, room, "root")
	inThread := func(body string) string {
		return bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": body,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	}
	inThread("reply 1")
	second := inThread("reply 2")
	bob.Send(t, room, "main")
	// A reaction to a thread reply belongs to the thread (but reactions do not notify).
	bob.SendEvent(t, room, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": second, "key": "👍"}})

	threaded := "sync?timeout=0&filter=" + url.QueryEscape(`{"room":{"timeline":{"unread_thread_notifications":true}}}`)
	check := func(mainN int64, threadN int64) {
		t.Helper()
		jr := joinedRoom(alice.Must(t, 200, "GET", threaded, nil), room)
		if jr.Get("unread_notifications.notification_count").Int() != mainN {
			t.Fatalf("main timeline: %s", jr.Get("unread_notifications").Raw)
		}
		tn := jr.Get("unread_thread_notifications." + escapeKey(root))
		if threadN == 0 {
			if tn.Exists() {
				t.Fatalf("a read thread is not listed: %s", jr.Get("unread_thread_notifications").Raw)
			}
		} else if tn.Get("notification_count").Int() != threadN || tn.Get("highlight_count").Int() != 0 {
			t.Fatalf("thread: %s", jr.Get("unread_thread_notifications").Raw)
		}
	}
	check(2, 2)
	wantCounts(t, alice, room, 4, 0) // without the filter flag: everything together
	// A threaded receipt reads only its thread.
	receipt(t, alice, room, second, map[string]any{"thread_id": root})
	check(2, 0)
	wantCounts(t, alice, room, 2, 0)
	inThread("reply 3")
	check(2, 1)
	// "main" reads the main timeline only.
	receipt(t, alice, room, root, map[string]any{"thread_id": "main"})
	check(1, 1)
}

// TestUnreadCountsOnAnotherNode: counts are durable and shared: a node that did not see
// the writes (it reads the room from storage) gives the same counts.
func TestUnreadCountsOnAnotherNode(t *testing.T) {
	nodes := hstest.NewCluster(t, 2)
	alice := nodes[0].Register(t, "alice")
	bob := nodes[0].Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	bob.Send(t, room, "one")
	bob.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "two", "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
	other := &hstest.Client{S: nodes[1], Token: alice.Token, UserID: alice.UserID}
	wantCounts(t, other, room, 2, 1)
	// Written on the second node (the same client, so its transaction IDs stay unique),
	// seen on the first.
	bob.S = nodes[1]
	bob.Send(t, room, "three")
	bob.S = nodes[0]
	wantCounts(t, other, room, 3, 1)
	deadline := 50
	for {
		n, _ := counts(t, alice, room)
		if n == 3 {
			break
		}
		if deadline--; deadline == 0 {
			t.Fatalf("node one never counted node two's message: %d", n)
		}
		bob.Must(t, 200, "GET", "sync?timeout=100", nil)
	}
}

// A message committed while its room is being read from storage counts as a notification:
// the events replayed after the load carry their push outcomes into the room's counts.
func TestNotificationCommittedDuringRoomLoad(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	for i := 1; i <= 3; i++ {
		s.Server.Hub().Evict(0)
		var once sync.Once
		sent := make(chan struct{})
		s.Server.Hub().SetLoadHook(func(string) {
			once.Do(func() { bob.Send(t, room, fmt.Sprintf("during load %d", i)); close(sent) })
		})
		bob.Send(t, room, fmt.Sprintf("loads the room %d", i)) // its evaluation has the room loaded
		select {
		case <-sent:
		case <-time.After(10 * time.Second):
			t.Fatal("the room was not loaded")
		}
		s.Server.Hub().SetLoadHook(nil)
		wantCounts(t, alice, room, int64(2*i), 0)
	}
}
