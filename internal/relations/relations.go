// Package relations reads event relationships (content.m.relates_to) and computes the
// bundled aggregations the spec defines for them ("Aggregations of child events"):
// m.thread (count, latest reply, whether the reader took part), m.replace (the latest
// valid edit) and m.reference (the referencing events). Pure functions: callers bring the
// children, from a room's memory or from storage, and say which of them the reader sees.
package relations

import (
	"cmp"
	"slices"

	"github.com/tidwall/gjson"

	"porthole/internal/storage"
)

// Relation types.
const (
	Thread     = "m.thread"
	Replace    = "m.replace"
	Reference  = "m.reference"
	Annotation = "m.annotation"
)

// MaxKeyLength bounds an annotation's key (as Synapse does).
const MaxKeyLength = 500

// Of returns the relation a stored event declares, if it declares one: a
// content.m.relates_to object with a string rel_type and a string event_id. A redacted
// event declares none (redaction prunes its content).
func Of(e *storage.Event) (storage.Relation, bool) {
	return ofContent(e, gjson.GetBytes(e.PDU, "content"))
}

// OfContent is Of for an event being built, whose content is given apart.
func OfContent(e *storage.Event, content []byte) (storage.Relation, bool) {
	return ofContent(e, gjson.ParseBytes(content))
}

func ofContent(e *storage.Event, content gjson.Result) (storage.Relation, bool) {
	rel := content.Get(`m\.relates_to`)
	if !rel.IsObject() {
		return storage.Relation{}, false
	}
	relType, parent := rel.Get("rel_type"), rel.Get("event_id")
	if relType.Type != gjson.String || parent.Type != gjson.String {
		return storage.Relation{}, false
	}
	r := storage.Relation{
		EventID: e.ID, RoomID: e.RoomID, Parent: parent.Str, RelType: relType.Str,
		NewContent: content.Get(`m\.new_content`).IsObject(),
		Pos:        e.Pos, Type: e.Type, Sender: e.Sender, OriginTS: e.OriginTS, Visibility: e.Visibility,
	}
	if key := rel.Get("key"); relType.Str == Annotation && key.Type == gjson.String {
		r.Key = key.Str
	}
	return r, true
}

// Parent is what aggregating needs to know of the event the children point at.
type Parent struct {
	ID, Type, Sender string
	State            bool
	Redacted         bool
	// RelType is the parent's own relation type, "" when it has none.
	RelType string
}

// Bundles reports whether the parent gets aggregations at all: state events do not (the
// spec), nor edits and annotations, which nothing may relate to (as in Synapse).
func (p Parent) Bundles() bool {
	return !p.State && p.RelType != Replace && p.RelType != Annotation
}

// Child is a child event as aggregation sees it: the events of a room's memory, or the
// relation rows read from storage.
type Child interface {
	Relation() *storage.Relation
}

// Bundle is one parent's aggregations for one reader.
type Bundle[C Child] struct {
	// ThreadCount > 0 means a thread: ThreadLatest is its latest reply the reader sees.
	ThreadCount  int
	ThreadLatest C
	// Participated: the reader sent the root or a reply.
	Participated bool
	// HasEdit says Edit is the latest valid edit the reader sees.
	HasEdit bool
	Edit    C
	// References are the IDs of the referencing events, oldest first.
	References []string
}

// Empty reports a bundle with nothing to show.
func (b *Bundle[C]) Empty() bool {
	return b.ThreadCount == 0 && !b.HasEdit && len(b.References) == 0
}

// ValidEdit applies the spec's rules for a replacement: same sender and type as the
// original, which is not a state event nor itself an edit, and (unless encrypted, where
// it is inside the ciphertext) an m.new_content object.
func ValidEdit(p Parent, c *storage.Relation) bool {
	return c.RelType == Replace && c.Sender == p.Sender && c.Type == p.Type && !p.State && p.RelType != Replace &&
		(c.NewContent || c.Type == "m.room.encrypted")
}

// newerEdit orders edits as the spec does: by origin_server_ts, then by event ID.
func newerEdit(a, b *storage.Relation) bool {
	if a.OriginTS != b.OriginTS {
		return a.OriginTS > b.OriginTS
	}
	return a.EventID > b.EventID
}

// Aggregate computes a parent's bundle for a reader from its children (in any order),
// counting only those visible says the reader may see. A redacted parent bundles no edit
// (its edits would leak the content the redaction removed); a thread can only start at
// an event without a relation of its own.
func Aggregate[C Child](p Parent, children []C, reader string, visible func(C) bool) Bundle[C] {
	var b Bundle[C]
	if !p.Bundles() {
		return b
	}
	var latest, edit *storage.Relation
	var refs []*storage.Relation
	for _, c := range children {
		r := c.Relation()
		if r == nil || r.Parent != p.ID {
			continue
		}
		switch r.RelType {
		case Thread:
			if p.RelType != "" || !visible(c) {
				continue
			}
			b.ThreadCount++
			b.Participated = b.Participated || r.Sender == reader
			if latest == nil || r.Pos > latest.Pos {
				latest, b.ThreadLatest = r, c
			}
		case Replace:
			if p.Redacted || !ValidEdit(p, r) || !visible(c) {
				continue
			}
			if edit == nil || newerEdit(r, edit) {
				edit, b.Edit, b.HasEdit = r, c, true
			}
		case Reference:
			if visible(c) {
				refs = append(refs, r)
			}
		}
	}
	if b.ThreadCount > 0 {
		b.Participated = b.Participated || p.Sender == reader
	}
	if len(refs) > 0 {
		slices.SortFunc(refs, func(a, b *storage.Relation) int { return cmp.Compare(a.Pos, b.Pos) })
		b.References = make([]string, len(refs))
		for i, r := range refs {
			b.References[i] = r.EventID
		}
	}
	return b
}
