package syncer

import (
	"context"
	"errors"
	"math"
	"strconv"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// RelationsRequest is a parsed GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
type RelationsRequest struct {
	RoomID, EventID    string
	RelType, EventType string
	From, To           *stream.Pos
	Forward            bool
	Limit              int
	// Recurse is nil when the client did not say (then the answer has no recursion_depth).
	Recurse *bool
}

// relationDepth is how many levels of relations recurse=true follows (the spec asks for
// at least three).
const relationDepth = 3

// visibleEvent reads an event of the room the viewer may see (404 otherwise, so that
// existence does not leak).
func (sy *Syncer) visibleEvent(ctx context.Context, a *roomAccess, v *viewer, eventID string) (*clientevent.Encoded, string, error) {
	notFound := mxerr.NotFound("Event not found")
	e, err := sy.store.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomID != a.room.ID || e.Pos > a.upTo)) {
		return nil, "", notFound
	} else if err != nil {
		return nil, "", mxerr.Internal(err)
	}
	enc := clientevent.Encode(&e)
	ok, m := v.sees(enc)
	if !ok {
		return nil, "", notFound
	}
	return enc, m, nil
}

// Relations pages through the events that relate to one event: newest first unless
// Forward, the same position tokens as /messages, each child filtered by history
// visibility as the timeline is and sent with its own aggregations. A parent the caller
// may not read is 404, whether the room, the event or the access is missing (the spec).
func (sy *Syncer) Relations(ctx context.Context, sess *auth.Session, req RelationsRequest) ([]byte, error) {
	a, err := sy.access(ctx, sess, req.RoomID)
	if e, ok := mxerr.As(err); ok && e.Status == 403 {
		// The spec's answer for a parent the caller may not read, unknown rooms included.
		return nil, mxerr.NotFound("Event not found")
	} else if err != nil {
		return nil, err
	}
	v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	if _, _, err := sy.visibleEvent(ctx, a, v, req.EventID); err != nil {
		return nil, err
	}
	q := storage.RelationQuery{RoomID: req.RoomID, Parent: req.EventID, RelType: req.RelType, EventType: req.EventType,
		Forward: req.Forward, Limit: req.Limit + 1, Recurse: req.Recurse != nil && *req.Recurse, UpTo: a.upTo}
	if req.Forward {
		if req.From != nil {
			q.After = *req.From
		}
		if req.To != nil {
			q.UpTo = min(*req.To, a.upTo)
		}
	} else {
		if req.From != nil {
			q.UpTo = min(*req.From, a.upTo)
		}
		if req.To != nil {
			q.After = *req.To
		}
	}
	rows, err := sy.store.Relations(ctx, q)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	more := len(rows) > req.Limit
	if more {
		rows = rows[:req.Limit]
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.EventID
	}
	stored, err := sy.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	byID := make(map[string]*storage.Event, len(stored))
	for i := range stored {
		byID[stored[i].ID] = &stored[i]
	}
	var chunk shownEvents
	for _, r := range rows {
		e := byID[r.EventID]
		if e == nil {
			continue
		}
		enc := clientevent.Encode(e)
		if ok, m := v.sees(enc); ok {
			chunk = append(chunk, shownEvent{enc, m})
		}
	}
	ag, err := sy.aggregate(ctx, v, a.room, a.upTo, chunk.events())
	if err != nil {
		return nil, err
	}
	b := []byte(`{"chunk":`)
	b = chunk.appendList(b, v, ag)
	if more {
		last := rows[len(rows)-1].Pos
		if !req.Forward {
			last--
		}
		b = append(b, `,"next_batch":"`...)
		b = last.AppendToken(b)
		b = append(b, '"')
	}
	if req.From != nil {
		b = append(b, `,"prev_batch":"`...)
		b = req.From.AppendToken(b)
		b = append(b, '"')
	}
	if req.Recurse != nil {
		depth := 1
		if *req.Recurse {
			depth = relationDepth
		}
		b = append(b, `,"recursion_depth":`...)
		b = strconv.AppendInt(b, int64(depth), 10)
	}
	return append(b, '}'), nil
}

// ThreadsRequest is a parsed GET /rooms/{roomId}/threads.
type ThreadsRequest struct {
	RoomID       string
	Participated bool
	From         *stream.Pos
	Limit        int
}

// threadScanCap bounds the threads one /threads request examines.
const threadScanCap = 1000

// Threads lists a room's thread roots, latest activity first, each with its aggregations.
// Only threads the reader can see are listed: a visible root with at least one visible
// reply by someone the reader does not ignore. A root sent by a user the reader ignores
// is left out, as Synapse does (the spec would send it redacted, but a redacted event
// without a redaction breaks the event schemas clients check). next_batch is the
// position of the last thread's latest reply: the next page has the threads active
// before it.
func (sy *Syncer) Threads(ctx context.Context, sess *auth.Session, req ThreadsRequest) ([]byte, error) {
	a, err := sy.access(ctx, sess, req.RoomID)
	if err != nil {
		return nil, err
	}
	v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
	if err != nil {
		return nil, err
	}
	before := stream.Pos(math.MaxInt64)
	if req.From != nil {
		before = *req.From
	}
	participant := ""
	if req.Participated {
		participant = sess.UserID
	}
	var chunk shownEvents
	ag := &aggregates{}
	var next stream.Pos
	batch := min(max(2*req.Limit, 20), threadScanCap)
	for scanned := 0; ; {
		threads, err := sy.store.Threads(ctx, req.RoomID, before, participant, batch)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		scanned += len(threads)
		roots, err := sy.threadRoots(ctx, a, v, threads)
		if err != nil {
			return nil, err
		}
		found, err := sy.aggregate(ctx, v, a.room, a.upTo, roots.events())
		if err != nil {
			return nil, err
		}
		for i, th := range threads {
			before = th.LatestPos
			root, bun := roots.find(th.RootID), found.get(th.RootID)
			if root == nil || bun == nil || bun.threadCount == 0 || (req.Participated && !bun.participated) {
				continue
			}
			chunk = append(chunk, *root)
			if len(chunk) == req.Limit {
				if i < len(threads)-1 || len(threads) == batch {
					next = th.LatestPos
				}
				break
			}
		}
		ag.merge(found)
		if len(chunk) == req.Limit || len(threads) < batch {
			break
		}
		if scanned >= threadScanCap {
			next = before // stopped early: the client goes on from here
			break
		}
	}
	b := []byte(`{"chunk":`)
	b = chunk.appendList(b, v, ag)
	if next > 0 {
		b = append(b, `,"next_batch":"`...)
		b = next.AppendToken(b)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// threadRoots reads the roots of threads the viewer may see, in the threads' order.
func (sy *Syncer) threadRoots(ctx context.Context, a *roomAccess, v *viewer, threads []storage.Thread) (shownEvents, error) {
	ids := make([]string, len(threads))
	for i, th := range threads {
		ids[i] = th.RootID
	}
	stored, err := sy.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	var out shownEvents
	for i := range stored {
		e := &stored[i]
		if e.RoomID != a.room.ID || e.Pos > a.upTo {
			continue
		}
		enc := clientevent.Encode(e)
		ok, m := v.sees(enc)
		if !ok {
			continue
		}
		out = append(out, shownEvent{enc, m})
	}
	return out, nil
}

func (s shownEvents) find(id string) *shownEvent {
	for i := range s {
		if s[i].ev.ID == id {
			return &s[i]
		}
	}
	return nil
}
