package rooms

import (
	"context"
	"errors"

	"porthole/internal/mxerr"
	"porthole/internal/relations"
	"porthole/internal/storage"
)

// checkRelation refuses a new event whose relation is bogus, as Synapse does for events
// its clients send: the parent must be in the same room and known (or already the target
// of some relation, so the client can know of it); an annotation needs a key of at most
// 500 bytes, and the same sender may not annotate the same way twice; a thread cannot
// start at an event that itself relates to another.
func checkRelation(ctx context.Context, r storage.Reader, room storage.Room, p Proto, content []byte) error {
	rel, ok := relations.OfContent(&storage.Event{Type: p.Type, Sender: p.Sender, RoomID: room.ID}, content)
	if !ok {
		return nil
	}
	parent, err := r.EventByID(ctx, rel.Parent)
	switch {
	case err == nil && parent.RoomID != room.ID:
		return mxerr.Unknown("Relations must be in the same room")
	case errors.Is(err, storage.ErrNotFound):
		known, err := r.Relations(ctx, storage.RelationQuery{RoomID: room.ID, Parent: rel.Parent, UpTo: maxPos, Limit: 1})
		if err != nil {
			return err
		}
		if len(known) == 0 {
			return mxerr.Unknown("Can't send relation to unknown event")
		}
	case err != nil:
		return err
	}
	switch rel.RelType {
	case relations.Annotation:
		if rel.Key == "" {
			return mxerr.Unknown("Missing aggregation key")
		}
		if len(rel.Key) > relations.MaxKeyLength {
			return mxerr.Unknown("Aggregation key is too long")
		}
		same, err := r.Relations(ctx, storage.RelationQuery{RoomID: room.ID, Parent: rel.Parent, RelType: relations.Annotation,
			EventType: p.Type, Sender: p.Sender, Key: rel.Key, UpTo: maxPos, Limit: 1})
		if err != nil {
			return err
		}
		if len(same) > 0 {
			return &mxerr.Error{Status: 400, Code: "M_DUPLICATE_ANNOTATION", Message: "Can't send same reaction twice"}
		}
	case relations.Thread:
		if parent.ID != "" {
			if _, nested := relations.Of(&parent); nested {
				return mxerr.Unknown("Cannot start threads from an event with a relation")
			}
		}
	}
	return nil
}

// maxPos is a position above every stored one.
const maxPos = 1<<63 - 1

// storeRelation records the relation a stored event declares, in its transaction.
func (pc *persistContext) storeRelation(stored *storage.Event) error {
	rel, ok := relations.Of(stored)
	if !ok {
		return nil
	}
	return pc.tx.PutRelation(pc.ctx, rel)
}

// dropRelation forgets the relation of an event being redacted: a redacted edit, reply
// or reference no longer counts in its parent's aggregations.
func (pc *persistContext) dropRelation(eventID string) error {
	if err := pc.tx.DeleteRelation(pc.ctx, eventID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return nil
}
