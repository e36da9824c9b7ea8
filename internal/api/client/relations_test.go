package client_test

import (
	"net/url"
	"testing"

	"github.com/tidwall/gjson"

	"porthole/internal/hstest"
)

// v1 is the path of a /_matrix/client/v1 endpoint of a room.
func v1(roomID, rest string) string {
	return "/_matrix/client/v1/rooms/" + url.PathEscape(roomID) + "/" + rest
}

func threadReply(root, body string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}
}

func edit(target, body string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": "* " + body,
		"m.new_content":  map[string]any{"msgtype": "m.text", "body": body},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": target}}
}

func reference(target string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": "see above",
		"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": target}}
}

func relationsOf(ev gjson.Result) gjson.Result { return ev.Get(`unsigned.m\.relations`) }

func TestBundledAggregationsSmoke(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	root := alice.Send(t, room, "root")
	bob.SendEvent(t, room, "m.room.message", threadReply(root, "one"))
	two := bob.SendEvent(t, room, "m.room.message", threadReply(root, "two"))
	alice.SendEvent(t, room, "m.room.message", edit(root, "root v2"))
	ev := alice.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(root), nil)
	t.Logf("%s", ev.Body)
	rel := relationsOf(ev.JSON())
	if rel.Get(`m\.thread.count`).Int() != 2 || rel.Get(`m\.thread.latest_event.event_id`).String() != two {
		t.Fatalf("thread: %s", rel.Raw)
	}
	r := bob.Must(t, 200, "GET", v1(room, "relations/"+url.PathEscape(root)), nil)
	t.Logf("%s", r.Body)
	th := alice.Must(t, 200, "GET", v1(room, "threads"), nil)
	t.Logf("%s", th.Body)
}
