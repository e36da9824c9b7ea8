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

// EventObserver queues, inside an event's transaction, what else must learn of the event
// (internal/appservice: the application services interested in it), so that an
// acknowledged event's deliveries survive a crash. prevHead is the room's head before it.
type EventObserver interface {
	EventPersisted(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event) error
}

// SetEventObserver makes every event persisted to a room's timeline, local or remote, go
// through o. Call it before serving.
func (s *Service) SetEventObserver(o EventObserver) { s.observer = o }

// observe runs the event observer for a stored event.
func (pc *persistContext) observe(stored *storage.Event, prevHead string) error {
	if pc.s.observer == nil {
		return nil
	}
	return pc.s.observer.EventPersisted(pc.ctx, pc.tx, pc.room.ID, prevHead, stored)
}

// pushOutcome runs the push evaluation for a stored event (persist's last step).
func (pc *persistContext) pushOutcome(stored *storage.Event, prevHead string, state map[storage.StateKeyOf]*storage.Event) (*storage.PushOutcome, error) {
	if pc.s.push == nil {
		return nil, nil
	}
	return pc.s.push.EventPushed(pc.ctx, pc.tx, pc.room.ID, prevHead, stored, state)
}

// remotePushOutcome runs the push evaluation for an accepted remote event; before is the
// state before it, of which evaluation reads the power levels and the create event.
func (pc *persistContext) remotePushOutcome(stored *storage.Event, prevHead string, before StateMap) (*storage.PushOutcome, error) {
	if pc.s.push == nil {
		return nil, nil
	}
	keys := []storage.StateKeyOf{{Type: "m.room.power_levels"}, {Type: "m.room.create"}}
	var ids []string
	for _, k := range keys {
		if id := before[k]; id != "" {
			ids = append(ids, id)
		}
	}
	evs, err := pc.tx.EventsByIDs(pc.ctx, ids)
	if err != nil {
		return nil, err
	}
	state := make(map[storage.StateKeyOf]*storage.Event, len(evs))
	for i := range evs {
		if evs[i].StateKey != nil {
			state[storage.StateKeyOf{Type: evs[i].Type, StateKey: *evs[i].StateKey}] = &evs[i]
		}
	}
	return pc.s.push.EventPushed(pc.ctx, pc.tx, pc.room.ID, prevHead, stored, state)
}

// FederationQueue queues, inside an event's transaction, an event for the other servers of
// its room (internal/federation's sender on the outbox): every event this server writes,
// and the joins, leaves and knocks it relays for a server that sent them through
// send_join, send_leave or send_knock (except is that server, which has the event).
type FederationQueue interface {
	QueueEvent(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event, except string) error
}

// SetFederationQueue makes every local event, and every relayed one, go through q. Call it
// before serving.
func (s *Service) SetFederationQueue(q FederationQueue) { s.fedQueue = q }

// federate queues a stored event for the room's other servers.
func (pc *persistContext) federate(stored *storage.Event, prevHead, except string) error {
	if pc.s.fedQueue == nil {
		return nil
	}
	return pc.s.fedQueue.QueueEvent(pc.ctx, pc.tx, pc.room.ID, prevHead, stored, except)
}
