package ephemeral

import (
	"context"
	"errors"

	"porthole/internal/mxerr"
	"porthole/internal/relations"
	"porthole/internal/storage"
)

// MainThread is the thread_id of a receipt on the main timeline.
const MainThread = "main"

// relationHops bounds how far up the chain of relations a receipt's event is followed
// (as Synapse does).
const relationHops = 3

// checkReceiptThread applies Synapse's rule for a threaded receipt: the event must belong
// to the thread. For "main", no relation up the event's chain is a thread reply; for a
// thread root, the top of the event's chain of relations is that root and has replies
// (so a receipt in thread A is valid on A, its replies, and what relates to either).
func (s *Service) checkReceiptThread(ctx context.Context, ev storage.Event, threadID string) error {
	top, inThread, err := s.relationChain(ctx, ev)
	if err != nil {
		return mxerr.Internal(err)
	}
	ok := false
	if threadID == MainThread {
		ok = inThread == ""
	} else if top == threadID {
		replies, err := s.store.Relations(ctx, storage.RelationQuery{RoomID: ev.RoomID, Parent: top, RelType: relations.Thread, UpTo: 1<<63 - 1, Limit: 1})
		if err != nil {
			return mxerr.Internal(err)
		}
		ok = len(replies) > 0
	}
	if !ok {
		return mxerr.InvalidParam("event_id " + ev.ID + " is not related to thread " + threadID)
	}
	return nil
}

// relationChain follows an event's relations upwards: it returns the topmost event reached
// and the root of the first thread relation met ("" for none).
func (s *Service) relationChain(ctx context.Context, ev storage.Event) (top, thread string, err error) {
	top = ev.ID
	for range relationHops + 1 {
		rel, ok := relations.Of(&ev)
		if !ok {
			return top, thread, nil
		}
		top = rel.Parent
		if rel.RelType == relations.Thread && thread == "" {
			thread = rel.Parent
		}
		ev, err = s.store.EventByID(ctx, rel.Parent)
		if errors.Is(err, storage.ErrNotFound) {
			return top, thread, nil
		} else if err != nil {
			return "", "", err
		}
	}
	return top, thread, nil
}
