package rooms

import (
	"context"

	"porthole/internal/storage"
)

// PushEvaluator decides, inside an event's transaction, who is notified of it
// (internal/notify): it records the outcome and queues pushes in tx, and returns what the
// room's unread index applies when the event is published (nil when nobody is notified).
type PushEvaluator interface {
	EventPushed(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event, state map[storage.StateKeyOf]*storage.Event) (*storage.PushOutcome, error)
}

// SetPushEvaluator makes every persisted event go through p. Call it before serving.
func (s *Service) SetPushEvaluator(p PushEvaluator) { s.push = p }

// pushOutcome runs the push evaluation for a stored event (persist's last step).
func (pc *persistContext) pushOutcome(stored *storage.Event, prevHead string, state map[storage.StateKeyOf]*storage.Event) (*storage.PushOutcome, error) {
	if pc.s.push == nil {
		return nil, nil
	}
	return pc.s.push.EventPushed(pc.ctx, pc.tx, pc.room.ID, prevHead, stored, state)
}
