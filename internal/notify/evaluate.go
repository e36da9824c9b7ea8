package notify

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/push"
	"porthole/internal/storage"
)

// EventPushed evaluates the push rules of the room's local members for an event being
// written in tx, records the outcome and queues the pushes. prevHead is the room's head
// before the event; state holds the room's current state that the event was authorized
// against (power levels, create event). It returns nil when nobody is notified.
func (s *Service) EventPushed(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event, state map[storage.StateKeyOf]*storage.Event) (*storage.PushOutcome, error) {
	if ev.Type == "m.room.create" {
		return nil, nil
	}
	members, count, err := s.membersToEvaluate(ctx, tx, roomID, prevHead, ev)
	if err != nil || len(members) == 0 {
		return nil, err
	}
	pev, err := push.NewEvent(ev.PDU, count)
	if err != nil {
		return nil, fmt.Errorf("preparing event for push rules: %w", err)
	}
	pev.SetRoomID(roomID)
	pev.PowerLevels = func() (int, map[string]int) {
		var pl, create []byte
		var creator string
		if e := state[storage.StateKeyOf{Type: "m.room.power_levels"}]; e != nil {
			pl = clientevent.Content(e)
		}
		if e := state[storage.StateKeyOf{Type: "m.room.create"}]; e != nil {
			create, creator = clientevent.Content(e), e.Sender
		}
		return push.SenderLevels(pl, create, creator, ev.Sender)
	}
	users := make([]string, len(members))
	for i, m := range members {
		users[i] = m.UserID
	}
	rules, err := s.rulesFor(ctx, tx, users)
	if err != nil {
		return nil, err
	}
	// Evaluate everyone, then keep the most common outcome as the base and the others
	// as exceptions.
	results := make([]*push.Matched, len(members))
	tally := map[string]int{}
	for i, m := range members {
		member := push.Member{UserID: m.UserID, DisplayName: m.DisplayName, LowerDisplayName: m.LowerDisplayName}
		results[i] = rules[i].Evaluate(pev, &member)
		tally[actionsKey(results[i])]++
	}
	baseKey, best := "[]", -1
	for k, n := range tally {
		if n > best || (n == best && k < baseKey) {
			baseKey, best = k, n
		}
	}
	out := &storage.PushOutcome{Pos: ev.Pos, RoomID: roomID, Sender: ev.Sender, TS: time.Now().UnixMilli()}
	var baseSet bool
	for i, m := range members {
		a := actionsOf(results[i])
		if actionsKey(results[i]) == baseKey {
			if !baseSet {
				out.Base, baseSet = a, true
			}
			continue
		}
		out.Exceptions = append(out.Exceptions, storage.PushException{UserID: m.UserID, PushActions: a})
	}
	if !baseSet {
		out.Base = storage.PushActions{Actions: "[]"}
	}
	// A member event is evaluated for its target only: the base then applies to no one.
	if ev.Type == "m.room.member" {
		out.Exceptions = nil
		for i, m := range members {
			out.Exceptions = append(out.Exceptions, storage.PushException{UserID: m.UserID, PushActions: actionsOf(results[i])})
		}
		out.Base = storage.PushActions{Actions: "[]"}
	}
	slices.SortFunc(out.Exceptions, func(a, b storage.PushException) int { return cmp.Compare(a.UserID, b.UserID) })
	notified := out.Base.Notify
	for _, x := range out.Exceptions {
		notified = notified || x.Notify
	}
	if !notified {
		return nil, nil
	}
	if out.ThreadID, err = threadOf(ctx, tx, ev.PDU); err != nil {
		return nil, err
	}
	if err := tx.PutPushOutcome(ctx, *out); err != nil {
		return nil, err
	}
	actions := make([]storage.PushActions, len(members))
	for i := range members {
		actions[i] = actionsOf(results[i])
	}
	if err := s.queuePushes(ctx, tx, ev, roomID, members, actions); err != nil {
		return nil, err
	}
	return out, nil
}

func actionsKey(m *push.Matched) string {
	if m == nil {
		return "[]"
	}
	return m.Actions
}

func actionsOf(m *push.Matched) storage.PushActions {
	if m == nil {
		return storage.PushActions{Actions: "[]"}
	}
	return storage.PushActions{Notify: m.Notify, Highlight: m.Highlight, Actions: m.Actions}
}

// membersToEvaluate returns the local members whose rules an event is evaluated for, and
// the room's joined member count. As in Synapse, a membership event is evaluated only for
// its target (a local user other than the sender who is in the room or being invited):
// evaluating every member's rules for joins and leaves of large rooms would cost much and
// notify nobody under the default rules. Other events are evaluated for the local joined
// members but the sender.
func (s *Service) membersToEvaluate(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event) ([]live.JoinedMember, int, error) {
	var joined []live.JoinedMember
	fresh := false
	if r := s.hub.LoadedRoom(roomID); r != nil {
		joined, fresh = r.JoinedMembers(prevHead)
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		target := *ev.StateKey
		if target == ev.Sender || !s.isLocal(target) || (ev.PrevMembership != "join" && ev.Membership != "invite") {
			return nil, 0, nil
		}
		count := len(joined)
		if !fresh {
			n, _, err := tx.MemberCounts(ctx, roomID)
			if err != nil {
				return nil, 0, err
			}
			count = n
		}
		name := gjson.GetBytes(ev.PDU, "content.displayname").String()
		return []live.JoinedMember{{UserID: target, DisplayName: name}}, count, nil
	}
	if !fresh {
		var err error
		if joined, err = joinedFromStorage(ctx, tx, roomID); err != nil {
			return nil, 0, err
		}
	}
	count := len(joined)
	out := joined[:0]
	for _, m := range joined {
		if m.UserID != ev.Sender && s.isLocal(m.UserID) {
			out = append(out, m)
		}
	}
	return out, count, nil
}

// joinedFromStorage reads the joined members and their display names in tx (a room not in
// memory, or one that another node wrote to since this node last applied it).
func joinedFromStorage(ctx context.Context, tx storage.Tx, roomID string) ([]live.JoinedMember, error) {
	ms, err := tx.Members(ctx, roomID, "join")
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.EventID
	}
	evs, err := tx.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(evs))
	for i := range evs {
		if evs[i].StateKey != nil {
			names[*evs[i].StateKey] = gjson.GetBytes(evs[i].PDU, "content.displayname").String()
		}
	}
	out := make([]live.JoinedMember, len(ms))
	for i, m := range ms {
		out[i] = live.JoinedMember{UserID: m.UserID, DisplayName: names[m.UserID]}
	}
	return out, nil
}

// threadOf finds the thread an event belongs to ("" the main timeline): the root of an
// m.thread relation, or the thread of the event another relation points at (a reaction
// to a reply in a thread), as Synapse does.
func threadOf(ctx context.Context, tx storage.Tx, pdu []byte) (string, error) {
	rel := gjson.GetBytes(pdu, `content.m\.relates_to`)
	if !rel.IsObject() {
		return "", nil
	}
	parent := rel.Get("event_id").String()
	if parent == "" || rel.Get("rel_type").String() == "" {
		return "", nil
	}
	if rel.Get("rel_type").String() == "m.thread" {
		return parent, nil
	}
	p, err := tx.EventByID(ctx, parent)
	if err != nil {
		return "", nil // unknown parent: main timeline
	}
	prel := gjson.GetBytes(p.PDU, `content.m\.relates_to`)
	if prel.Get("rel_type").String() == "m.thread" {
		return prel.Get("event_id").String(), nil
	}
	return "", nil
}

// rulesFor returns each user's compiled rules, reading those not cached from tx in one
// query.
func (s *Service) rulesFor(ctx context.Context, tx storage.Tx, users []string) ([]*push.Compiled, error) {
	out := make([]*push.Compiled, len(users))
	var missing []string
	s.rulesMu.Lock()
	for i, u := range users {
		if c := s.rules[u]; c != nil {
			out[i] = c
		} else {
			missing = append(missing, u)
		}
	}
	s.rulesMu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	gen := s.rulesGen.Load()
	stored, err := tx.AccountDataOfUsers(ctx, missing, "", push.AccountDataType)
	if err != nil {
		return nil, err
	}
	loaded := make(map[string]*push.Compiled, len(missing))
	for _, u := range missing {
		loaded[u] = push.DefaultRules()
	}
	for _, a := range stored {
		loaded[a.UserID] = push.Compile(push.Load(a.Content, a.UserID))
	}
	s.rulesMu.Lock()
	if s.rulesGen.Load() == gen {
		if len(s.rules)+len(loaded) > maxCachedRules {
			s.rules = map[string]*push.Compiled{}
		}
		for u, c := range loaded {
			s.rules[u] = c
		}
	}
	s.rulesMu.Unlock()
	for i, u := range users {
		if out[i] == nil {
			out[i] = loaded[u]
		}
	}
	return out, nil
}

// forgetRules drops a user's cached rules (their account data changed).
func (s *Service) forgetRules(userID string) {
	s.rulesGen.Add(1)
	s.rulesMu.Lock()
	delete(s.rules, userID)
	s.rulesMu.Unlock()
}
