package appservice_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"porthole/internal/hstest"
)

// cactusNamespaces is what Cactus Comments registers: its users and the comment rooms'
// aliases (#comments_<site>_<page>).
const cactusNamespaces = `  users:
    - exclusive: true
      regex: '@cactus.*:localhost'
  aliases:
    - exclusive: true
      regex: '#comments_.*:localhost'
`

// TestCommentSectionFlow is an embedded comment section end to end, as Cactus Comments
// runs it: the widget's visitor registers a guest and asks for the page's alias; the
// homeserver asks the service, which creates the room on demand (public,
// world_readable, guests can_join); the guest reads it through initialSync and the peek
// stream, then joins and posts; the service receives the post in a transaction and the
// peeking reader sees it.
func TestCommentSectionFlow(t *testing.T) {
	cactus := newFakeService(t, "cactus")
	var s *hstest.Server
	created := map[string]string{}
	cactus.onAlias = func(alias string) int {
		name := strings.TrimSuffix(strings.TrimPrefix(alias, "#"), ":localhost")
		if !strings.HasPrefix(name, "comments_example.org_") {
			return 404 // not a site it knows
		}
		r := cactus.client(s).Do(t, "POST", "createRoom", map[string]any{
			"room_alias_name": name, "visibility": "private", "preset": "public_chat",
			"name": "Comments on " + strings.TrimPrefix(name, "comments_"),
			"initial_state": []map[string]any{
				{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "world_readable"}},
				{"type": "m.room.guest_access", "content": map[string]any{"guest_access": "can_join"}},
			},
		})
		if r.Status != 200 {
			t.Errorf("the service creating %s: %s", alias, r)
			return 500
		}
		created[alias] = r.Get("room_id").String()
		return 200
	}
	s = hstest.New(t, withServices(cactus.registration(t, cactusNamespaces)))
	alias := "#comments_example.org_blog-post-1:localhost"

	// A first visitor: the page has no comments room yet.
	guest := s.Guest(t)
	roomID := guest.Must(t, 200, "GET", "directory/room/"+url.PathEscape(alias), nil).Get("room_id").String()
	if roomID == "" || created[alias] != roomID {
		t.Fatalf("the alias resolves to %q; the service created %q", roomID, created[alias])
	}
	is := guest.Must(t, 200, "GET", hstest.Room(roomID)+"/initialSync", nil)
	if !strings.Contains(is.String(), "world_readable") || is.Get("membership").Exists() {
		t.Fatalf("the guest's peek at the new room: %s", is)
	}
	from := is.Get("messages.end").String()

	// A second visitor reads along while the first one posts.
	reader := s.Guest(t)
	peekFrom := reader.Must(t, 200, "GET", hstest.Room(roomID)+"/initialSync", nil).Get("messages.end").String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peeked := make(chan hstest.Response, 1)
	go func() {
		peeked <- reader.DoCtx(ctx, t, "GET", "events?room_id="+url.QueryEscape(roomID)+"&from="+url.QueryEscape(peekFrom)+"&timeout=15000", nil)
	}()
	s.WaitParked(t, 1)

	guest.Must(t, 200, "POST", "join/"+url.PathEscape(alias), map[string]any{})
	post := guest.Send(t, roomID, "Great post!")

	got, tx := cactus.waitEvent(t, "the comment", byID(post))
	if got["sender"] != guest.UserID || got["room_id"] != roomID || got["content"].(map[string]any)["body"] != "Great post!" {
		t.Errorf("the service got %v", got)
	}
	if tx.ID == "" {
		t.Error("no transaction ID")
	}
	// The join reached the service too, before the comment.
	var order []string
	for _, tx := range cactus.transactions() {
		for _, ev := range tx.Events {
			if ev["room_id"] == roomID {
				order = append(order, ev["type"].(string)+"/"+stateKey(ev))
			}
		}
	}
	if !strings.Contains(strings.Join(order, " "), "m.room.member/"+guest.UserID+" m.room.message/") {
		t.Errorf("events of the room as the service got them: %v", order)
	}
	select {
	case r := <-peeked:
		if r.Status != 200 || !strings.Contains(string(r.Body), guest.UserID) {
			t.Errorf("the peeking reader: %s", r)
		}
	case <-ctx.Done():
		t.Fatal("the peek stream never woke")
	}
	// The poster's own stream, from its peek, carries its comment.
	ev := guest.Must(t, 200, "GET", "events?room_id="+url.QueryEscape(roomID)+"&from="+url.QueryEscape(from)+"&timeout=0", nil)
	if !strings.Contains(ev.String(), post) {
		t.Errorf("the guest's stream after posting: %s", ev)
	}
	// The next visitor finds the room without asking the service again.
	before := len(created)
	if again := s.Guest(t).Must(t, 200, "GET", "directory/room/"+url.PathEscape(alias), nil).Get("room_id").String(); again != roomID || len(created) != before {
		t.Errorf("second lookup: %s (rooms created %d)", again, len(created))
	}
	// A site the service does not know: no room.
	s.Guest(t).MustErr(t, 404, "M_NOT_FOUND", "GET", "directory/room/"+url.PathEscape("#comments_other.site_x:localhost"), nil)
}

func stateKey(ev map[string]any) string {
	if sk, ok := ev["state_key"].(string); ok {
		return sk
	}
	return ""
}
