package relations

import (
	"slices"
	"testing"

	"porthole/internal/storage"
	"porthole/internal/stream"
)

func TestOf(t *testing.T) {
	cases := []struct {
		name    string
		pdu     string
		ok      bool
		relType string
		key     string
		newC    bool
	}{
		{"thread", `{"content":{"m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}}`, true, Thread, "", false},
		{"edit with new content", `{"content":{"m.new_content":{"body":"x"},"m.relates_to":{"rel_type":"m.replace","event_id":"$root"}}}`, true, Replace, "", true},
		{"edit with new content not an object", `{"content":{"m.new_content":"x","m.relates_to":{"rel_type":"m.replace","event_id":"$root"}}}`, true, Replace, "", false},
		{"annotation key", `{"content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$root","key":"👍"}}}`, true, Annotation, "👍", false},
		{"key only for annotations", `{"content":{"m.relates_to":{"rel_type":"m.reference","event_id":"$root","key":"k"}}}`, true, Reference, "", false},
		{"unknown types are relations too", `{"content":{"m.relates_to":{"rel_type":"org.example","event_id":"$root"}}}`, true, "org.example", "", false},
		{"a reply is not a relation", `{"content":{"m.relates_to":{"m.in_reply_to":{"event_id":"$root"}}}}`, false, "", "", false},
		{"rel_type not a string", `{"content":{"m.relates_to":{"rel_type":1,"event_id":"$root"}}}`, false, "", "", false},
		{"event_id missing", `{"content":{"m.relates_to":{"rel_type":"m.thread"}}}`, false, "", "", false},
		{"relates_to not an object", `{"content":{"m.relates_to":"$root"}}`, false, "", "", false},
		{"no content", `{}`, false, "", "", false},
	}
	for _, c := range cases {
		e := &storage.Event{ID: "$child", RoomID: "!r", Pos: 7, Type: "m.room.message", Sender: "@a:hs", OriginTS: 5, Visibility: "shared", PDU: []byte(c.pdu)}
		r, ok := Of(e)
		if ok != c.ok || r.RelType != c.relType || r.Key != c.key || r.NewContent != c.newC {
			t.Errorf("%s: got %v %+v", c.name, ok, r)
			continue
		}
		if ok && (r.Parent != "$root" || r.EventID != "$child" || r.Pos != 7 || r.Sender != "@a:hs" || r.Visibility != "shared" || r.OriginTS != 5) {
			t.Errorf("%s: fields not copied: %+v", c.name, r)
		}
	}
}

func child(id string, pos int64, relType, sender string) *storage.Relation {
	return &storage.Relation{EventID: id, Parent: "$p", RelType: relType, Pos: stream.Pos(pos), Type: "m.room.message", Sender: sender, OriginTS: pos, NewContent: true}
}

func all(*storage.Relation) bool { return true }

func TestAggregate(t *testing.T) {
	parent := Parent{ID: "$p", Type: "m.room.message", Sender: "@alice"}
	children := []*storage.Relation{
		child("$t1", 2, Thread, "@bob"),
		child("$t2", 5, Thread, "@carol"),
		child("$e1", 3, Replace, "@alice"),
		child("$e2", 4, Replace, "@alice"),
		child("$forged", 6, Replace, "@bob"), // not the original's sender
		child("$r2", 9, Reference, "@bob"),
		child("$r1", 8, Reference, "@bob"),
		child("$a", 10, Annotation, "@bob"),
		{EventID: "$other", Parent: "$elsewhere", RelType: Thread, Pos: 11, Sender: "@bob"},
	}
	b := Aggregate(parent, children, "@bob", all)
	if b.ThreadCount != 2 || b.ThreadLatest.EventID != "$t2" || !b.Participated {
		t.Errorf("thread: %+v", b)
	}
	if !b.HasEdit || b.Edit.EventID != "$e2" {
		t.Errorf("edit: %+v", b.Edit)
	}
	if !slices.Equal(b.References, []string{"$r1", "$r2"}) {
		t.Errorf("references: %v", b.References)
	}
	// Participation is the reader's: the root's sender took part, a stranger did not.
	if b := Aggregate(parent, children, "@alice", all); !b.Participated {
		t.Error("the root's sender did not participate")
	}
	if b := Aggregate(parent, children, "@dave", all); b.Participated {
		t.Error("a stranger participated")
	}
	// What the reader cannot see does not count.
	hidden := func(c *storage.Relation) bool { return c.EventID != "$t2" && c.EventID != "$e2" && c.EventID != "$r1" }
	b = Aggregate(parent, children, "@dave", hidden)
	if b.ThreadCount != 1 || b.ThreadLatest.EventID != "$t1" || b.Edit.EventID != "$e1" || !slices.Equal(b.References, []string{"$r2"}) {
		t.Errorf("filtered: %+v", b)
	}
	// Nothing visible: an empty bundle.
	if b := Aggregate(parent, children, "@dave", func(*storage.Relation) bool { return false }); !b.Empty() {
		t.Errorf("invisible children aggregated: %+v", b)
	}
	// A redacted original bundles no edit, but keeps its thread and references.
	red := parent
	red.Redacted = true
	if b := Aggregate(red, children, "@bob", all); b.HasEdit || b.ThreadCount != 2 || len(b.References) != 2 {
		t.Errorf("redacted parent: %+v", b)
	}
	// An event that relates to another starts no thread; edits and annotations, and state
	// events, get no aggregations at all.
	inThread := parent
	inThread.RelType = Thread
	if b := Aggregate(inThread, children, "@bob", all); b.ThreadCount != 0 || !b.HasEdit {
		t.Errorf("thread reply as a parent: %+v", b)
	}
	for _, p := range []Parent{{ID: "$p", RelType: Replace}, {ID: "$p", RelType: Annotation}, {ID: "$p", State: true}} {
		if b := Aggregate(p, children, "@bob", all); !b.Empty() {
			t.Errorf("%+v got aggregations: %+v", p, b)
		}
	}
}

func TestEditRules(t *testing.T) {
	p := Parent{ID: "$p", Type: "m.room.message", Sender: "@alice"}
	good := child("$e", 1, Replace, "@alice")
	cases := []struct {
		name string
		p    Parent
		c    func(*storage.Relation)
		want bool
	}{
		{"valid", p, func(*storage.Relation) {}, true},
		{"other sender", p, func(c *storage.Relation) { c.Sender = "@bob" }, false},
		{"other type", p, func(c *storage.Relation) { c.Type = "m.sticker" }, false},
		{"no m.new_content", p, func(c *storage.Relation) { c.NewContent = false }, false},
		{"encrypted: new content is inside", Parent{ID: "$p", Type: "m.room.encrypted", Sender: "@alice"}, func(c *storage.Relation) { c.NewContent, c.Type = false, "m.room.encrypted" }, true},
		{"state original", Parent{ID: "$p", Type: "m.room.message", Sender: "@alice", State: true}, func(*storage.Relation) {}, false},
		{"edit of an edit", Parent{ID: "$p", Type: "m.room.message", Sender: "@alice", RelType: Replace}, func(*storage.Relation) {}, false},
	}
	for _, c := range cases {
		r := *good
		c.c(&r)
		if got := ValidEdit(c.p, &r); got != c.want {
			t.Errorf("%s: %v", c.name, got)
		}
	}
	// The latest edit is the latest by origin_server_ts, then by event ID.
	a := child("$a", 1, Replace, "@alice")
	b := child("$b", 2, Replace, "@alice")
	a.OriginTS, b.OriginTS = 10, 10
	late := child("$0", 3, Replace, "@alice")
	late.OriginTS = 5
	if got := Aggregate(p, []*storage.Relation{b, late, a}, "", all); got.Edit.EventID != "$b" {
		t.Errorf("tie on origin_server_ts: %s", got.Edit.EventID)
	}
}
