package syncer

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"slices"
	"strconv"

	"porthole/internal/clientevent"
	"porthole/internal/filter"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/relations"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// maxChildrenRead bounds the children of one parent and relation type that a response
// reads from storage (the newest ones): past it, a thread's count is what the server
// read, which the spec allows ("the approximate number of events in the thread").
const maxChildrenRead = 1000

// maxChildrenTotal bounds the children one response reads from storage in all: many
// parents share it (each still gets at least 50 of each type).
const maxChildrenTotal = 20000

// bundle is one event's aggregations for one reader, with the events it carries.
type bundle struct {
	threadCount  int
	latest       *clientevent.Encoded
	participated bool
	edit         *clientevent.Encoded
	references   []string
}

// aggregates are the bundled aggregations of one response's events (unsigned.m.relations),
// computed for its reader in a batch: from the room's window when the events are recent
// (no storage read at all), else with one read of the children, one of the events the
// bundles carry, and one of their own children.
type aggregates struct {
	byID map[string]*bundle
}

// parentOf describes an encoded event as a parent of relations.
func parentOf(e *clientevent.Encoded) relations.Parent {
	return relations.Parent{ID: e.ID, Type: e.Type, Sender: e.Sender, State: e.StateKey != nil, Redacted: e.Redacted, RelType: e.RelType()}
}

// childVisible reports whether the viewer may see a child at pos with visibility vis sent
// by sender, in a response that reaches upTo: the same rule as for the timeline itself,
// so that aggregations tell nobody about events they could not read.
func (v *viewer) childVisible(pos stream.Pos, vis, sender string, upTo stream.Pos) bool {
	if pos > upTo {
		return false
	}
	if _, ok := v.ignored[sender]; ok {
		return false
	}
	return visibility.CanSee(vis, live.MembershipAt(v.history, pos), v.peeking)
}

// aggregate computes the aggregations of evs (events of one room) for v, counting the
// children up to upTo. The result is nil when no event has any.
func (sy *Syncer) aggregate(ctx context.Context, v *viewer, room *live.Room, upTo stream.Pos, evs []*clientevent.Encoded) (*aggregates, error) {
	var parents []*clientevent.Encoded
	for _, e := range evs {
		if parentOf(e).Bundles() {
			parents = append(parents, e)
		}
	}
	if len(parents) == 0 {
		return nil, nil
	}
	var inWindow map[string][]*clientevent.Encoded
	missing := parents
	if room != nil {
		inWindow, missing = room.Children(parents)
	}
	if len(inWindow) == 0 && len(missing) == 0 {
		return nil, nil
	}
	ag := &aggregates{}
	var needEvents []string
	var storedEdit, storedLatest map[string]string // parent ID -> edit / latest reply ID, to read
	visible := func(c *clientevent.Encoded) bool { return v.childVisible(c.Pos, c.Visibility, c.Sender, upTo) }
	arena := make([]bundle, 0, len(inWindow))
	for _, p := range parents {
		children, ok := inWindow[p.ID]
		if !ok {
			continue
		}
		b := relations.Aggregate(parentOf(p), children, v.reader.UserID, visible)
		if b.Empty() {
			continue
		}
		arena = append(arena, bundle{threadCount: b.ThreadCount, latest: b.ThreadLatest, participated: b.Participated, edit: b.Edit, references: b.References})
		ag.add(p.ID, &arena[len(arena)-1])
	}
	if len(missing) > 0 {
		ids := make([]string, len(missing))
		for i, p := range missing {
			ids[i] = p.ID
		}
		perType := min(maxChildrenRead, max(50, maxChildrenTotal/len(ids)))
		rows, err := sy.store.RelationChildren(ctx, missing[0].RoomID, ids, upTo, perType)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		byParent := make(map[string][]*storage.Relation)
		for i := range rows {
			byParent[rows[i].Parent] = append(byParent[rows[i].Parent], &rows[i])
		}
		for _, p := range missing {
			children := byParent[p.ID]
			if len(children) == 0 {
				continue
			}
			b := relations.Aggregate(parentOf(p), children, v.reader.UserID, func(c *storage.Relation) bool {
				return v.childVisible(c.Pos, c.Visibility, c.Sender, upTo)
			})
			if b.Empty() {
				continue
			}
			ag.add(p.ID, &bundle{threadCount: b.ThreadCount, participated: b.Participated, references: b.References})
			if storedLatest == nil {
				storedLatest, storedEdit = map[string]string{}, map[string]string{}
			}
			if b.ThreadCount > 0 {
				storedLatest[p.ID] = b.ThreadLatest.EventID
				needEvents = append(needEvents, b.ThreadLatest.EventID)
			}
			if b.HasEdit {
				storedEdit[p.ID] = b.Edit.EventID
				needEvents = append(needEvents, b.Edit.EventID)
			}
		}
	}
	if ag.byID == nil {
		return nil, nil
	}
	if len(needEvents) > 0 {
		stored, err := sy.store.EventsByIDs(ctx, needEvents)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		byID := make(map[string]*clientevent.Encoded, len(stored))
		for i := range stored {
			byID[stored[i].ID] = clientevent.Encode(&stored[i])
		}
		for parent, id := range storedLatest {
			ag.byID[parent].latest = byID[id]
		}
		for parent, id := range storedEdit {
			ag.byID[parent].edit = byID[id]
		}
	}
	// A thread's latest reply is itself sent with its aggregations (its edit, its
	// references); replies cannot start threads, so this goes one level deep.
	var latest []*clientevent.Encoded
	for id, b := range ag.byID {
		if b.threadCount > 0 && b.latest == nil {
			b.threadCount = 0 // the reply could not be read: no thread to show
		}
		if b.threadCount == 0 && b.edit == nil && len(b.references) == 0 {
			delete(ag.byID, id)
			continue
		}
		if b.latest != nil && !slices.ContainsFunc(parents, func(p *clientevent.Encoded) bool { return p.ID == b.latest.ID }) {
			latest = append(latest, b.latest)
		}
	}
	if len(latest) > 0 {
		nested, err := sy.aggregate(ctx, v, room, upTo, latest)
		if err != nil {
			return nil, err
		}
		if nested != nil {
			for id, b := range nested.byID {
				ag.byID[id] = b
			}
		}
	}
	return ag, nil
}

// get returns an event's bundle (nil when it has none; ag may be nil).
func (ag *aggregates) get(id string) *bundle {
	if ag == nil {
		return nil
	}
	return ag.byID[id]
}

// merge adds other's bundles to ag.
func (ag *aggregates) merge(other *aggregates) {
	if other == nil {
		return
	}
	for id, b := range other.byID {
		ag.add(id, b)
	}
}

func (ag *aggregates) add(id string, b *bundle) {
	if ag.byID == nil {
		ag.byID = make(map[string]*bundle, 8)
	}
	ag.byID[id] = b
}

// appendEvent writes an event for v with its aggregations, if it has any (ag may be nil).
func (ag *aggregates) appendEvent(b []byte, v *viewer, e *clientevent.Encoded, membership string) []byte {
	if ag == nil || ag.byID[e.ID] == nil {
		return v.appendEvent(b, e, membership)
	}
	return e.AppendWith(b, v.nowMS, visibility.ClientMembership(membership), v.reader, func(b []byte) []byte {
		return ag.appendRelations(b, v, ag.byID[e.ID], 0)
	})
}

// appendFiltered writes an event for v with the filter's event_fields applied, and then
// its aggregations, which (as in Synapse) are always returned.
func (ag *aggregates) appendFiltered(v *viewer, f *filter.Filter, e *clientevent.Encoded, membership string) []byte {
	bun := ag.get(e.ID)
	if f == nil || len(f.EventFields) == 0 || bun == nil {
		return f.ApplyEventFields(ag.appendEvent(nil, v, e, membership))
	}
	var obj map[string]jsontext.Value
	if json.Unmarshal(f.ApplyEventFields(v.appendEvent(nil, e, membership)), &obj) != nil {
		return ag.appendEvent(nil, v, e, membership)
	}
	unsigned := map[string]jsontext.Value{}
	if raw, ok := obj["unsigned"]; ok {
		json.Unmarshal(raw, &unsigned)
	}
	rel := ag.appendRelations(nil, v, bun, 0)
	unsigned["m.relations"] = jsontext.Value(rel[len(`"m.relations":`):])
	obj["unsigned"], _ = json.Marshal(unsigned, json.Deterministic(true))
	out, err := json.Marshal(obj, json.Deterministic(true))
	if err != nil {
		return ag.appendEvent(nil, v, e, membership)
	}
	return out
}

// appendRelations writes "m.relations":{...}. The events it carries are written as
// Synapse writes them: in full, with age and the sender's transaction ID but without the
// reader's membership, the latest reply with its own aggregations.
func (ag *aggregates) appendRelations(b []byte, v *viewer, bun *bundle, depth int) []byte {
	b = append(b, `"m.relations":{`...)
	n := 0
	sep := func() {
		if n > 0 {
			b = append(b, ',')
		}
		n++
	}
	if len(bun.references) > 0 {
		sep()
		b = append(b, `"m.reference":{"chunk":[`...)
		for i, id := range bun.references {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"event_id":`...)
			b, _ = jsontext.AppendQuote(b, id)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	if bun.edit != nil {
		sep()
		b = append(b, `"m.replace":`...)
		b = bun.edit.Append(b, v.nowMS, "", v.reader)
	}
	if bun.threadCount > 0 && bun.latest != nil {
		sep()
		b = append(b, `"m.thread":{"latest_event":`...)
		var extra func([]byte) []byte
		if nested := ag.byID[bun.latest.ID]; nested != nil && depth == 0 {
			extra = func(b []byte) []byte { return ag.appendRelations(b, v, nested, depth+1) }
		}
		b = bun.latest.AppendWith(b, v.nowMS, "", v.reader, extra)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(bun.threadCount), 10)
		b = append(b, `,"current_user_participated":`...)
		b = strconv.AppendBool(b, bun.participated)
		b = append(b, '}')
	}
	return append(b, '}')
}

// shownEvent is an event a reader sees, with their membership at it.
type shownEvent struct {
	ev *clientevent.Encoded
	m  string
}

type shownEvents []shownEvent

func (s shownEvents) events() []*clientevent.Encoded {
	out := make([]*clientevent.Encoded, len(s))
	for i := range s {
		out[i] = s[i].ev
	}
	return out
}

// appendList writes the events as a JSON array, with their aggregations.
func (s shownEvents) appendList(b []byte, v *viewer, ag *aggregates) []byte {
	b = append(b, '[')
	for i, x := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = ag.appendEvent(b, v, x.ev, x.m)
	}
	return append(b, ']')
}
