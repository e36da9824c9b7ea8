package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/tidwall/gjson"

	"porthole/internal/config"
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
		"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": target}}
}

func reference(target string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": "see above",
		"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": target}}
}

func reaction(target, key string) map[string]any {
	return map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": target, "key": key}}
}

func relationsOf(ev gjson.Result) gjson.Result { return ev.Get(`unsigned.m\.relations`) }

func getEvent(t *testing.T, c *hstest.Client, room, id string) gjson.Result {
	t.Helper()
	return c.Must(t, 200, "GET", hstest.Room(room)+"/event/"+url.PathEscape(id), nil).JSON()
}

// find returns the event with the ID among events.
func find(events []gjson.Result, id string) gjson.Result {
	for _, e := range events {
		if e.Get("event_id").String() == id {
			return e
		}
	}
	return gjson.Result{}
}

func ids(events []gjson.Result) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Get("event_id").String())
	}
	return out
}

// latestEdit is the edit the spec calls most recent: the latest origin_server_ts, then the
// largest event ID (edits sent in the same millisecond tie on the first).
func latestEdit(t *testing.T, c *hstest.Client, room string, edits ...string) string {
	t.Helper()
	best, bestTS := "", int64(-1)
	for _, id := range edits {
		ts := getEvent(t, c, room, id).Get("origin_server_ts").Int()
		if ts > bestTS || ts == bestTS && id > best {
			best, bestTS = id, ts
		}
	}
	return best
}

// storageModes runs a test twice: with the events in the rooms' in-memory windows, and
// with a window so small that the events under test have left it (storage serves them).
func storageModes(t *testing.T, run func(t *testing.T, s *hstest.Server, push func(c *hstest.Client, room string))) {
	t.Run("window", func(t *testing.T) {
		run(t, hstest.New(t), func(*hstest.Client, string) {})
	})
	t.Run("storage", func(t *testing.T) {
		s := hstest.New(t, func(c *config.Config) { c.PeekWindow = 16 })
		run(t, s, func(c *hstest.Client, room string) {
			for i := range 20 {
				c.SendEvent(t, room, "org.example.filler", map[string]any{"n": i})
			}
		})
	})
}

// checkBundle checks a root's aggregations: a thread of count replies whose latest is
// latest (with its own edit latestEdit, if given), the edit, and the references.
func checkBundle(t *testing.T, label string, ev gjson.Result, count int, latest, latestEdit string, participated bool, edit string, refs []string) {
	t.Helper()
	rel := relationsOf(ev)
	if !ev.Exists() {
		t.Errorf("%s: event missing", label)
		return
	}
	th := rel.Get(`m\.thread`)
	if count == 0 {
		if th.Exists() {
			t.Errorf("%s: unexpected thread %s", label, th.Raw)
		}
	} else if th.Get("count").Int() != int64(count) || th.Get("latest_event.event_id").String() != latest ||
		th.Get("current_user_participated").Bool() != participated || th.Get("latest_event.type").String() != "m.room.message" ||
		th.Get("latest_event.content.body").Type != gjson.String {
		t.Errorf("%s: thread %s, want count %d latest %s participated %v", label, th.Raw, count, latest, participated)
	}
	if got := th.Get(`latest_event.unsigned.m\.relations.m\.replace.event_id`).String(); got != latestEdit {
		t.Errorf("%s: latest reply's edit %q, want %q", label, got, latestEdit)
	}
	if got := rel.Get(`m\.replace.event_id`).String(); got != edit {
		t.Errorf("%s: edit %q, want %q (%s)", label, got, edit, rel.Raw)
	}
	if edit != "" && rel.Get(`m\.replace.content.m\.new_content.body`).Type != gjson.String {
		t.Errorf("%s: the edit is not given whole: %s", label, rel.Get(`m\.replace`).Raw)
	}
	var gotRefs []string
	for _, r := range rel.Get(`m\.reference.chunk`).Array() {
		gotRefs = append(gotRefs, r.Get("event_id").String())
	}
	if !slices.Equal(gotRefs, refs) {
		t.Errorf("%s: references %v, want %v", label, gotRefs, refs)
	}
	if count == 0 && edit == "" && len(refs) == 0 && rel.Exists() {
		t.Errorf("%s: unexpected aggregations %s", label, rel.Raw)
	}
}

// Every read path that returns the root carries its aggregations, whether the events are
// in the room's memory or only in storage.
func TestBundledAggregationsOnEveryReadPath(t *testing.T) {
	storageModes(t, func(t *testing.T, s *hstest.Server, push func(*hstest.Client, string)) {
		alice := s.Register(t, "")
		bob := s.Register(t, "")
		carol := s.Register(t, "")
		room := alice.WorldReadableRoom(t)
		bob.Join(t, room)
		carol.Join(t, room)
		since := alice.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
		root := alice.Send(t, room, "root")
		bob.SendEvent(t, room, "m.room.message", threadReply(root, "one"))
		two := bob.SendEvent(t, room, "m.room.message", threadReply(root, "two"))
		twoEdit := bob.SendEvent(t, room, "m.room.message", edit(two, "two, edited"))
		rootEdit1 := alice.SendEvent(t, room, "m.room.message", edit(root, "root v2"))
		rootEdit2 := alice.SendEvent(t, room, "m.room.message", edit(root, "root v3"))
		ref := carol.SendEvent(t, room, "m.room.message", reference(root))
		push(alice, room)
		rootEdit := latestEdit(t, alice, room, rootEdit1, rootEdit2)

		want := func(label string, c *hstest.Client, ev gjson.Result) {
			t.Helper()
			checkBundle(t, label, ev, 2, two, twoEdit, c != carol, rootEdit, []string{ref})
		}
		for _, c := range []*hstest.Client{alice, carol} {
			want("/event", c, getEvent(t, c, room, root))
			msgs := c.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=100", nil)
			want("/messages", c, find(msgs.Get("chunk").Array(), root))
			ctx := c.Must(t, 200, "GET", hstest.Room(room)+"/context/"+url.PathEscape(root)+"?limit=4", nil)
			want("/context event", c, ctx.Get("event"))
			ctx = c.Must(t, 200, "GET", hstest.Room(room)+"/context/"+url.PathEscape(two)+"?limit=10", nil)
			want("/context events_before", c, find(ctx.Get("events_before").Array(), root))
			ris := c.Must(t, 200, "GET", hstest.Room(room)+"/initialSync?limit=100", nil)
			want("room initialSync", c, find(ris.Get("messages.chunk").Array(), root))
			gis := c.Must(t, 200, "GET", "initialSync?limit=100", nil)
			for _, r := range gis.Get("rooms").Array() {
				if r.Get("room_id").String() == room {
					want("global initialSync", c, find(r.Get("messages.chunk").Array(), root))
				}
			}
			ev := c.Must(t, 200, "GET", eventsPath(room, since, "timeout=0&limit=100"), nil)
			want("/events?room_id", c, find(ev.Get("chunk").Array(), root))
			ev = c.Must(t, 200, "GET", "events?timeout=0&limit=100&from="+url.QueryEscape(since), nil)
			want("/events", c, find(ev.Get("chunk").Array(), root))
			// A limited timeline carries aggregations (as in Synapse): one that starts
			// at the root.
			n := slices.Index(ids(msgs.Get("chunk").Array()), root) + 1
			f := url.QueryEscape(fmt.Sprintf(`{"room":{"timeline":{"limit":%d}}}`, n))
			sync := c.Must(t, 200, "GET", "sync?filter="+f, nil)
			tl := joinedRoom(sync, room).Get("timeline")
			if !tl.Get("limited").Bool() {
				t.Fatalf("timeline not limited: %s", tl.Raw)
			}
			want("/sync", c, find(tl.Get("events").Array(), root))
			rels := c.Must(t, 200, "GET", v1(room, "relations/"+url.PathEscape(root)+"/m.thread"), nil)
			// The children come with their own aggregations: the reply's edit.
			checkBundle(t, "/relations child", find(rels.Get("chunk").Array(), two), 0, "", "", false, twoEdit, nil)
			threads := c.Must(t, 200, "GET", v1(room, "threads"), nil)
			want("/threads", c, find(threads.Get("chunk").Array(), root))
		}
		// A peeker too.
		g := s.Guest(t)
		checkBundle(t, "peeker /event", getEvent(t, g, room, root), 2, two, twoEdit, false, rootEdit, []string{ref})
	})
}

// A /sync timeline that is not limited has every child itself: no aggregations, as in
// Synapse. A reader who already got the root is not sent it again when a reply arrives;
// the next read of the root shows the reply.
func TestIncrementalSyncAndNewRelations(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	since := alice.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()
	root := alice.Send(t, room, "root")
	bob.SendEvent(t, room, "m.room.message", threadReply(root, "r"))
	r := alice.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	tl := joinedRoom(r, room).Get("timeline")
	if tl.Get("limited").Bool() || relationsOf(find(tl.Get("events").Array(), root)).Exists() {
		t.Fatalf("unlimited timeline: %s", tl.Raw)
	}
	since = r.Get("next_batch").String()
	second := bob.SendEvent(t, room, "m.room.message", threadReply(root, "r2"))
	r = alice.Must(t, 200, "GET", "sync?timeout=0&since="+since, nil)
	if got := ids(joinedRoom(r, room).Get("timeline.events").Array()); !slices.Equal(got, []string{second}) {
		t.Fatalf("incremental timeline: %v", got)
	}
	checkBundle(t, "after the replies", getEvent(t, alice, room, root), 2, second, "", true, "", nil)
}

// GET /relations pages both ways, filters by relation and event type, and recurses.
func TestRelationsPagination(t *testing.T) {
	storageModes(t, func(t *testing.T, s *hstest.Server, push func(*hstest.Client, string)) {
		alice := s.Register(t, "")
		room := alice.CreateRoom(t, nil)
		root := alice.Send(t, room, "root")
		var replies []string
		for i := range 7 {
			replies = append(replies, alice.SendEvent(t, room, "m.room.message", threadReply(root, fmt.Sprint(i))))
		}
		ed := alice.SendEvent(t, room, "m.room.message", edit(root, "v2"))
		ref := alice.SendEvent(t, room, "m.room.message", reference(root))
		like := alice.SendEvent(t, room, "m.reaction", reaction(ref, "👍"))
		deep := alice.SendEvent(t, room, "m.room.message", reference(like)) // three levels below the root
		alice.Send(t, room, "unrelated")
		push(alice, room)
		base := v1(room, "relations/"+url.PathEscape(root))
		all := []string{ref, ed, replies[6], replies[5], replies[4], replies[3], replies[2], replies[1], replies[0]}

		// Backwards (the default), five per page, then the rest.
		p1 := alice.Must(t, 200, "GET", base, nil)
		if got := ids(p1.Get("chunk").Array()); !slices.Equal(got, all[:5]) || p1.Get("prev_batch").Exists() || p1.Get("recursion_depth").Exists() {
			t.Fatalf("page 1: %v %s", got, p1.Body)
		}
		next := p1.Get("next_batch").String()
		p2 := alice.Must(t, 200, "GET", base+"?from="+next, nil)
		if got := ids(p2.Get("chunk").Array()); !slices.Equal(got, all[5:]) || p2.Get("next_batch").Exists() || p2.Get("prev_batch").String() != next {
			t.Fatalf("page 2: %v %s", got, p2.Body)
		}
		// to stops a page: page 1's next_batch is "after" page 2's events.
		p3 := alice.Must(t, 200, "GET", base+"?limit=100&to="+next, nil)
		if got := ids(p3.Get("chunk").Array()); !slices.Equal(got, all[:5]) {
			t.Fatalf("up to page 1's end: %v", got)
		}
		// Forwards, oldest first, and its next page.
		f1 := alice.Must(t, 200, "GET", base+"?dir=f&limit=4", nil)
		rev := slices.Clone(all)
		slices.Reverse(rev)
		if got := ids(f1.Get("chunk").Array()); !slices.Equal(got, rev[:4]) {
			t.Fatalf("forwards: %v", got)
		}
		f2 := alice.Must(t, 200, "GET", base+"?dir=f&limit=100&from="+f1.Get("next_batch").String(), nil)
		if got := ids(f2.Get("chunk").Array()); !slices.Equal(got, rev[4:]) || f2.Get("next_batch").Exists() {
			t.Fatalf("forwards page 2: %v", got)
		}
		// Filters.
		th := alice.Must(t, 200, "GET", base+"/m.thread?limit=100", nil)
		if got := ids(th.Get("chunk").Array()); !slices.Equal(got, all[2:]) {
			t.Fatalf("m.thread: %v", got)
		}
		typed := alice.Must(t, 200, "GET", base+"/m.reference/m.room.message", nil)
		if got := ids(typed.Get("chunk").Array()); !slices.Equal(got, []string{ref}) {
			t.Fatalf("m.reference m.room.message: %v", got)
		}
		if got := alice.Must(t, 200, "GET", base+"/m.reference/m.sticker", nil).Get("chunk").Array(); len(got) != 0 {
			t.Fatalf("m.reference m.sticker: %v", got)
		}
		// Recursion follows relations of relations, three levels down.
		rec := alice.Must(t, 200, "GET", base+"?limit=100&recurse=true", nil)
		if got := ids(rec.Get("chunk").Array()); !slices.Equal(got, append([]string{deep, like}, all...)) || rec.Get("recursion_depth").Int() != 3 {
			t.Fatalf("recursive: %v %s", got, rec.Get("recursion_depth").Raw)
		}
		rec = alice.Must(t, 200, "GET", base+"/m.annotation?recurse=true", nil)
		if got := ids(rec.Get("chunk").Array()); !slices.Equal(got, []string{like}) {
			t.Fatalf("recursive annotations: %v", got)
		}
		rec = alice.Must(t, 200, "GET", base+"?limit=100&org.matrix.msc3981.recurse=true", nil)
		if len(rec.Get("chunk").Array()) != 11 {
			t.Fatalf("unstable recurse: %s", rec.Body)
		}
		if r := alice.Must(t, 200, "GET", base+"?recurse=false", nil); r.Get("recursion_depth").Int() != 1 || len(r.Get("chunk").Array()) != 5 {
			t.Fatalf("recurse=false: %s", r.Body)
		}
		// Absurd limits are clamped; limit 0 gives one.
		if got := alice.Must(t, 200, "GET", base+"?limit=1000000", nil).Get("chunk").Array(); len(got) != 9 {
			t.Fatalf("huge limit: %d", len(got))
		}
		if got := alice.Must(t, 200, "GET", base+"?limit=0", nil).Get("chunk").Array(); len(got) != 1 {
			t.Fatalf("limit 0: %d", len(got))
		}
	})
}

func TestRelationsBadInput(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	stranger := s.Register(t, "")
	room := alice.CreateRoom(t, nil)
	other := alice.CreateRoom(t, nil)
	root := alice.Send(t, room, "root")
	elsewhere := alice.Send(t, other, "elsewhere")
	base := v1(room, "relations/"+url.PathEscape(root))
	alice.MustErr(t, 400, "M_UNKNOWN", "GET", base+"?from=garbage", nil)
	alice.MustErr(t, 400, "M_UNKNOWN", "GET", base+"?to=s", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", base+"?dir=sideways", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", base+"?limit=-1", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", base+"?limit=many", nil)
	alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", base+"?recurse=maybe", nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", v1(room, "relations/$nope"), nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", v1(room, "relations/"+url.PathEscape(elsewhere)), nil)
	alice.MustErr(t, 404, "M_NOT_FOUND", "GET", v1("!unknown:localhost", "relations/"+url.PathEscape(root)), nil)
	stranger.MustErr(t, 404, "M_NOT_FOUND", "GET", base, nil)
	s.Anon().MustErr(t, 401, "M_MISSING_TOKEN", "GET", base, nil)
	// Only under /v1, as the spec has it.
	alice.MustErr(t, 404, "M_UNRECOGNIZED", "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/relations/"+url.PathEscape(root), nil)
}

// The server refuses bogus relations, as Synapse does.
func TestRelationSendChecks(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	other := alice.CreateRoom(t, nil)
	root := alice.Send(t, room, "root")
	elsewhere := alice.Send(t, other, "elsewhere")
	send := func(c *hstest.Client, evType string, content any) hstest.Response {
		return c.Do(t, "PUT", hstest.Room(room)+"/send/"+evType+"/"+fmt.Sprint(&content), content)
	}
	expect := func(label string, r hstest.Response, status int, code string) {
		t.Helper()
		if r.Status != status || (code != "" && r.Get("errcode").String() != code) {
			t.Errorf("%s: %s, want %d %s", label, r, status, code)
		}
	}
	expect("unknown parent", send(alice, "m.room.message", threadReply("$nope", "x")), 400, "M_UNKNOWN")
	expect("parent in another room", send(alice, "m.room.message", threadReply(elsewhere, "x")), 400, "M_UNKNOWN")
	expect("annotation without key", send(alice, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root}}), 400, "M_UNKNOWN")
	long := make([]byte, 501)
	for i := range long {
		long[i] = 'k'
	}
	expect("annotation key too long", send(alice, "m.reaction", reaction(root, string(long))), 400, "M_UNKNOWN")
	expect("reaction", send(bob, "m.reaction", reaction(root, "👍")), 200, "")
	dup := send(bob, "m.reaction", reaction(root, "👍"))
	expect("the same reaction twice", dup, 400, "M_DUPLICATE_ANNOTATION")
	expect("another user's same reaction", send(alice, "m.reaction", reaction(root, "👍")), 200, "")
	expect("another key", send(bob, "m.reaction", reaction(root, "👎")), 200, "")
	reply := alice.SendEvent(t, room, "m.room.message", threadReply(root, "in thread"))
	expect("a thread off a thread reply", send(bob, "m.room.message", threadReply(reply, "nested")), 400, "M_UNKNOWN")
	expect("a reference to a reply", send(bob, "m.room.message", reference(reply)), 200, "")
	// A redacted reaction may be sent again.
	likes := bob.Must(t, 200, "GET", v1(room, "relations/"+url.PathEscape(root)+"/m.annotation"), nil).Get("chunk").Array()
	for _, l := range likes {
		if l.Get("sender").String() == bob.UserID && l.Get("content.m\\.relates_to.key").String() == "👍" {
			bob.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(l.Get("event_id").String())+"/r1", map[string]any{})
		}
	}
	expect("the reaction again after its redaction", send(bob, "m.reaction", reaction(root, "👍")), 200, "")
	// Nothing refused was stored.
	msgs := alice.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=100", nil)
	for _, e := range msgs.Get("chunk").Array() {
		if b := e.Get("content.body").String(); b == "nested" || b == "x" {
			t.Errorf("a refused event was stored: %s", e.Raw)
		}
	}
}

// Edits: only the original sender's, of the same type, latest first; not of state events.
func TestEditAggregation(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	bob.Join(t, room)
	msg := alice.Send(t, room, "hello")
	good := alice.SendEvent(t, room, "m.room.message", edit(msg, "hello!"))
	bob.SendEvent(t, room, "m.room.message", edit(msg, "forged")) // another sender
	alice.SendEvent(t, room, "m.sticker", map[string]any{"body": "s", "url": "mxc://x/y", "info": map[string]any{},
		"m.new_content": map[string]any{"body": "t"}, "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": msg}}) // another type
	alice.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "no new content",
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": msg}})
	ev := getEvent(t, bob, room, msg)
	checkBundle(t, "edits", ev, 0, "", "", false, good, nil)
	if ev.Get("content.body").String() != "hello" {
		t.Errorf("the original's content was replaced: %s", ev.Raw)
	}
	// An edit of an edit, and edits of state events, are not bundled.
	alice.SendEvent(t, room, "m.room.message", edit(good, "again"))
	checkBundle(t, "the edit itself", getEvent(t, alice, room, good), 0, "", "", false, "", nil)
	checkBundle(t, "after an edit of an edit", getEvent(t, alice, room, msg), 0, "", "", false, good, nil)
	topic := alice.SetState(t, room, "m.room.topic", "", map[string]any{"topic": "t"})
	alice.SendEvent(t, room, "m.room.topic", edit(topic, "t2"))
	checkBundle(t, "state event", getEvent(t, alice, room, topic), 0, "", "", false, "", nil)
	// The latest is the newest origin_server_ts.
	latest := alice.SendEvent(t, room, "m.room.message", edit(msg, "hello!!"))
	checkBundle(t, "latest edit", getEvent(t, bob, room, msg), 0, "", "", false, latestEdit(t, bob, room, good, latest), nil)
}

// A redacted edit no longer bundles, a redacted reply no longer counts, and a redacted
// original bundles no edit (its thread and references stay, as in Synapse).
func TestRelationRedactions(t *testing.T) {
	storageModes(t, func(t *testing.T, s *hstest.Server, push func(*hstest.Client, string)) {
		alice := s.Register(t, "")
		bob := s.Register(t, "")
		room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
		bob.Join(t, room)
		root := alice.Send(t, room, "root")
		r1 := bob.SendEvent(t, room, "m.room.message", threadReply(root, "1"))
		r2 := bob.SendEvent(t, room, "m.room.message", threadReply(root, "2"))
		e1 := alice.SendEvent(t, room, "m.room.message", edit(root, "v2"))
		e2 := alice.SendEvent(t, room, "m.room.message", edit(root, "v3"))
		ref := bob.SendEvent(t, room, "m.room.message", reference(root))
		push(alice, room)
		redact := func(c *hstest.Client, id string) {
			c.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(id)+"/x"+id[1:8], map[string]any{})
		}
		if latestEdit(t, alice, room, e1, e2) != e2 {
			e1, e2 = e2, e1 // same millisecond: the larger ID is the latest
		}
		checkBundle(t, "before", getEvent(t, alice, room, root), 2, r2, "", true, e2, []string{ref})
		redact(alice, e2)
		redact(bob, r2)
		checkBundle(t, "after redacting the latest edit and reply", getEvent(t, alice, room, root), 1, r1, "", true, e1, []string{ref})
		threads := alice.Must(t, 200, "GET", v1(room, "threads"), nil)
		checkBundle(t, "/threads", find(threads.Get("chunk").Array(), root), 1, r1, "", true, e1, []string{ref})
		if got := ids(alice.Must(t, 200, "GET", v1(room, "relations/"+url.PathEscape(root)), nil).Get("chunk").Array()); !slices.Equal(got, []string{ref, e1, r1}) {
			t.Errorf("relations after the redactions: %v", got)
		}
		redact(bob, r1)
		redact(bob, ref)
		checkBundle(t, "after redacting every reply", getEvent(t, alice, room, root), 0, "", "", false, e1, nil)
		if got := alice.Must(t, 200, "GET", v1(room, "threads"), nil).Get("chunk").Array(); len(got) != 0 {
			t.Errorf("a thread without replies is listed: %v", got)
		}
		// Redacting the original: no edit bundled, the thread it still has is.
		r3 := bob.SendEvent(t, room, "m.room.message", threadReply(root, "3"))
		redact(alice, root)
		ev := getEvent(t, alice, room, root)
		checkBundle(t, "redacted root", ev, 1, r3, "", true, "", nil)
		if ev.Get("content.body").Exists() {
			t.Errorf("root not redacted: %s", ev.Raw)
		}
	})
}

// Aggregations count only the children the reader could read: a peeker of a room that
// became world-readable learns nothing of the replies sent while it was not.
func TestRelationVisibility(t *testing.T) {
	storageModes(t, func(t *testing.T, s *hstest.Server, push func(*hstest.Client, string)) {
		alice := s.Register(t, "")
		room := alice.WorldReadableRoom(t)
		setHV := func(v string) {
			alice.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": v})
		}
		root := alice.Send(t, room, "root")
		public1 := alice.SendEvent(t, room, "m.room.message", threadReply(root, "public 1"))
		setHV("shared")
		hidden := alice.SendEvent(t, room, "m.room.message", threadReply(root, "hidden"))
		hiddenEdit := alice.SendEvent(t, room, "m.room.message", edit(root, "hidden edit"))
		hiddenRef := alice.SendEvent(t, room, "m.room.message", reference(root))
		setHV("world_readable")
		public2 := alice.SendEvent(t, room, "m.room.message", threadReply(root, "public 2"))
		push(alice, room)

		member := alice
		checkBundle(t, "member", getEvent(t, member, room, root), 3, public2, "", true, hiddenEdit, []string{hiddenRef})
		for name, p := range peekers(t, s) {
			ev := getEvent(t, p, room, root)
			checkBundle(t, name+" peeker", ev, 2, public2, "", false, "", nil)
			if got := ids(p.Must(t, 200, "GET", v1(room, "relations/"+url.PathEscape(root)+"?limit=100"), nil).Get("chunk").Array()); !slices.Equal(got, []string{public2, public1}) {
				t.Errorf("%s peeker's relations: %v", name, got)
			}
			msgs := p.Must(t, 200, "GET", hstest.Room(room)+"/messages?dir=b&limit=100", nil)
			checkBundle(t, name+" peeker /messages", find(msgs.Get("chunk").Array(), root), 2, public2, "", false, "", nil)
		}
		// The hidden reply itself is not found by a peeker.
		g := s.Guest(t)
		g.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(room)+"/event/"+url.PathEscape(hidden), nil)
		g.MustErr(t, 404, "M_NOT_FOUND", "GET", v1(room, "relations/"+url.PathEscape(hidden)), nil)
		// When the replies of the public period are gone too, the peeker sees no thread.
		for _, id := range []string{public1, public2} {
			alice.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(id)+"/x"+id[1:8], map[string]any{})
		}
		checkBundle(t, "peeker, public replies redacted", getEvent(t, g, room, root), 0, "", "", false, "", nil)
		checkBundle(t, "member, public replies redacted", getEvent(t, alice, room, root), 1, hidden, "", true, hiddenEdit, []string{hiddenRef})
		r := s.Register(t, "")
		if got := r.Must(t, 200, "GET", v1(room, "threads"), nil).Get("chunk").Array(); len(got) != 0 {
			t.Errorf("a peeker lists a thread whose replies it cannot see: %v", ids(got))
		}
	})
}

// A member who joined a "joined"-visibility room later counts only the replies since.
func TestRelationVisibilityJoinedLater(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
		{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})
	root := alice.Send(t, room, "root")
	alice.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "joined"})
	alice.SendEvent(t, room, "m.room.message", threadReply(root, "before bob"))
	bob.Join(t, room)
	after := alice.SendEvent(t, room, "m.room.message", threadReply(root, "after bob"))
	checkBundle(t, "bob", getEvent(t, bob, room, root), 1, after, "", false, "", nil)
	checkBundle(t, "alice", getEvent(t, alice, room, root), 2, after, "", true, "", nil)
}

// Replies from users the reader ignores do not count; the latest reply is then the latest
// from someone else.
func TestRelationsAndIgnoredUsers(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	troll := s.Register(t, "")
	bob := s.Register(t, "")
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	troll.Join(t, room)
	bob.Join(t, room)
	root := alice.Send(t, room, "root")
	fine := bob.SendEvent(t, room, "m.room.message", threadReply(root, "fine"))
	noise := troll.SendEvent(t, room, "m.room.message", threadReply(root, "noise"))
	trollRoot := troll.Send(t, room, "troll root")
	bob.SendEvent(t, room, "m.room.message", threadReply(trollRoot, "answer"))
	checkBundle(t, "before ignoring", getEvent(t, alice, room, root), 2, noise, "", true, "", nil)
	alice.Must(t, 200, "PUT", "user/"+url.PathEscape(alice.UserID)+"/account_data/m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{troll.UserID: map[string]any{}}})
	checkBundle(t, "ignoring", getEvent(t, alice, room, root), 1, fine, "", true, "", nil)
	checkBundle(t, "bob ignores nobody", getEvent(t, bob, room, root), 2, noise, "", true, "", nil)
	// /threads leaves out the ignored user's root (as Synapse), not the others'.
	threads := alice.Must(t, 200, "GET", v1(room, "threads"), nil).Get("chunk").Array()
	if got := ids(threads); !slices.Equal(got, []string{root}) {
		t.Errorf("alice's threads: %v", got)
	}
	if got := ids(bob.Must(t, 200, "GET", v1(room, "threads"), nil).Get("chunk").Array()); !slices.Equal(got, []string{trollRoot, root}) {
		t.Errorf("bob's threads: %v", got)
	}
}

// GET /threads: latest activity first, include=participated, pages, bad input.
func TestThreadsList(t *testing.T) {
	storageModes(t, func(t *testing.T, s *hstest.Server, push func(*hstest.Client, string)) {
		alice := s.Register(t, "")
		bob := s.Register(t, "")
		carol := s.Register(t, "")
		room := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
		bob.Join(t, room)
		carol.Join(t, room)
		a := alice.Send(t, room, "a")
		b := bob.Send(t, room, "b")
		c := carol.Send(t, room, "c")
		alice.Send(t, room, "no thread here")
		carol.SendEvent(t, room, "m.room.message", threadReply(a, "a1"))
		carol.SendEvent(t, room, "m.room.message", threadReply(b, "b1"))
		carol.SendEvent(t, room, "m.room.message", threadReply(c, "c1"))
		alice.SendEvent(t, room, "m.room.message", threadReply(b, "b2")) // b is now the latest
		push(alice, room)
		list := func(c *hstest.Client, q string) hstest.Response {
			return c.Must(t, 200, "GET", v1(room, "threads"+q), nil)
		}
		if got := ids(list(alice, "").Get("chunk").Array()); !slices.Equal(got, []string{b, c, a}) {
			t.Fatalf("threads: %v", got)
		}
		if got := ids(list(alice, "?include=participated").Get("chunk").Array()); !slices.Equal(got, []string{b, a}) {
			t.Fatalf("alice participated: %v", got)
		}
		if got := ids(list(bob, "?include=participated").Get("chunk").Array()); !slices.Equal(got, []string{b}) {
			t.Fatalf("bob participated: %v", got)
		}
		if got := ids(list(carol, "?include=all").Get("chunk").Array()); !slices.Equal(got, []string{b, c, a}) {
			t.Fatalf("carol, all: %v", got)
		}
		// One per page.
		var paged []string
		q := "?limit=1"
		for range 5 {
			r := list(bob, q)
			paged = append(paged, ids(r.Get("chunk").Array())...)
			next := r.Get("next_batch").String()
			if next == "" {
				break
			}
			q = "?limit=1&from=" + next
		}
		if !slices.Equal(paged, []string{b, c, a}) {
			t.Fatalf("paged: %v", paged)
		}
		alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1(room, "threads?include=mine"), nil)
		alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1(room, "threads?limit=0"), nil)
		alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1(room, "threads?limit=-3"), nil)
		alice.MustErr(t, 400, "M_INVALID_PARAM", "GET", v1(room, "threads?from=garbage"), nil)
		s.Guest(t).MustErr(t, 403, "M_GUEST_ACCESS_FORBIDDEN", "GET", v1(room, "threads"), nil)
		private := alice.CreateRoom(t, nil)
		bob.MustErr(t, 403, "M_FORBIDDEN", "GET", v1(private, "threads"), nil)
		bob.MustErr(t, 403, "M_FORBIDDEN", "GET", v1("!nope:localhost", "threads"), nil)
		if got := list(alice, "?limit=100000").Get("chunk").Array(); len(got) != 3 {
			t.Fatalf("huge limit: %d", len(got))
		}
	})
}

// A threaded receipt must name the event's thread, or "main" for an event outside any
// thread, as Synapse checks.
func TestThreadedReceiptsMatchThreads(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, nil)
	root := alice.Send(t, room, "root")
	reply := alice.SendEvent(t, room, "m.room.message", threadReply(root, "reply"))
	like := alice.SendEvent(t, room, "m.reaction", reaction(reply, "👍"))
	ref := alice.SendEvent(t, room, "m.room.message", reference(root))
	plain := alice.Send(t, room, "plain")
	receipt := func(event string, body any) hstest.Response {
		return alice.Do(t, "POST", hstest.Room(room)+"/receipt/m.read/"+url.PathEscape(event), body)
	}
	for _, c := range []struct {
		event  string
		thread any
		ok     bool
	}{
		{reply, root, true}, {like, root, true}, {root, root, true}, {ref, root, true},
		{root, "main", true}, {ref, "main", true}, {plain, "main", true},
		{reply, "main", false}, {like, "main", false}, {plain, root, false}, {root, reply, false},
		{reply, "$unknown", false}, {plain, "", false}, {plain, 7, false}, {plain, nil, false},
	} {
		r := receipt(c.event, map[string]any{"thread_id": c.thread})
		if c.ok && r.Status != 200 || !c.ok && (r.Status != 400 || r.Get("errcode").String() != "M_INVALID_PARAM") {
			t.Errorf("receipt on %s in thread %v: %s", c.event, c.thread, r)
		}
	}
	alice.Must(t, 200, "POST", hstest.Room(room)+"/receipt/m.read/"+url.PathEscape(reply), map[string]any{})
	alice.MustErr(t, 400, "M_INVALID_PARAM", "POST", hstest.Room(room)+"/receipt/m.fully_read/"+url.PathEscape(plain), map[string]any{"thread_id": "main"})
}

// A filter's event_fields do not strip aggregations (Synapse adds them after filtering).
func TestAggregationsSurviveEventFields(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "")
	room := alice.CreateRoom(t, nil)
	alice.Send(t, room, "before")
	root := alice.Send(t, room, "root")
	reply := alice.SendEvent(t, room, "m.room.message", threadReply(root, "r"))
	f := url.QueryEscape(`{"event_fields":["event_id","type","sender","origin_server_ts","content.body","content.msgtype"],` +
		`"room":{"state":{"types":[]},"timeline":{"limit":2,"types":["m.room.message"]}}}`)
	tl := joinedRoom(alice.Must(t, 200, "GET", "sync?filter="+f, nil), room).Get("timeline")
	ev := find(tl.Get("events").Array(), root)
	if !tl.Get("limited").Bool() || ev.Get("content.body").String() != "root" || ev.Get("room_id").Exists() || ev.Get("unsigned.age").Exists() ||
		relationsOf(ev).Get(`m\.thread.latest_event.event_id`).String() != reply {
		t.Fatalf("filtered root: %s", tl.Raw)
	}
}

// On a cluster, a node's window learns another node's replies and redactions through its
// catch-up, so its aggregations match.
func TestClusterAggregations(t *testing.T) {
	nodes := hstest.NewCluster(t, 2)
	a, b := nodes[0], nodes[1]
	owner := a.Register(t, "")
	room := owner.WorldReadableRoom(t)
	g := b.Guest(t)
	start := g.Must(t, 200, "GET", eventsPath(room, "", "timeout=0"), nil).Get("end").String()
	root := owner.Send(t, room, "root")
	// wait waits on node B for the next event after from and returns its end token.
	wait := func(from string) string {
		t.Helper()
		r := g.Must(t, 200, "GET", eventsPath(room, from, "timeout=10000"), nil)
		if len(r.Get("chunk").Array()) == 0 {
			t.Fatalf("nothing reached node B: %s", r)
		}
		return r.Get("end").String()
	}
	from := wait(start)
	reply := owner.SendEvent(t, room, "m.room.message", threadReply(root, "r"))
	from = wait(from)
	peek := func() gjson.Result {
		return find(g.Must(t, 200, "GET", eventsPath(room, start, "timeout=0&limit=100"), nil).Get("chunk").Array(), root)
	}
	checkBundle(t, "node B", peek(), 1, reply, "", false, "", nil)
	owner.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(reply)+"/r", map[string]any{})
	wait(from)
	checkBundle(t, "node B after the redaction", peek(), 0, "", "", false, "", nil)
	checkBundle(t, "node B /event", getEvent(t, g, room, root), 0, "", "", false, "", nil)
}
