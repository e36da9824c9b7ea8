package notify

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/clientevent"
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
	set, err := s.membersToEvaluate(ctx, tx, roomID, prevHead, ev)
	if err != nil || len(set.members) == 0 {
		return nil, err
	}
	pev, err := push.NewEvent(ev.PDU, set.count)
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
	rules, err := s.roomRulesFor(ctx, tx, roomID, set)
	if err != nil {
		return nil, err
	}
	// Evaluate every local member but the sender (rules are nil for remote members), then
	// keep the most common outcome as the base and the others as exceptions.
	results := make([]*push.Matched, len(set.members))
	// A room's members end in a handful of distinct outcomes: count them in a short list.
	type count struct {
		m *push.Matched
		n int
	}
	var tally []count
	for i := range set.members {
		m := &set.members[i]
		if rules[i] == nil || m.UserID == ev.Sender {
			continue
		}
		r := rules[i].Evaluate(pev, m)
		results[i] = r
		j := 0
		for j < len(tally) && tally[j].m != r {
			j++
		}
		if j == len(tally) {
			tally = append(tally, count{m: r})
		}
		tally[j].n++
	}
	// Outcomes are grouped by their actions (two rules may act alike).
	notified := false
	byActions := make(map[string]int, len(tally))
	for _, c := range tally {
		byActions[actionsKey(c.m)] += c.n
		notified = notified || (c.m != nil && c.m.Notify)
	}
	if !notified {
		return nil, nil
	}
	baseKey, best := "[]", -1
	for k, n := range byActions {
		if n > best || (n == best && k < baseKey) {
			baseKey, best = k, n
		}
	}
	out := &storage.PushOutcome{Pos: ev.Pos, RoomID: roomID, Sender: ev.Sender, TS: time.Now().UnixMilli(), Base: storage.PushActions{Actions: "[]"}}
	// A member event is evaluated for its target only: the base then applies to no one.
	memberEvent := ev.Type == "m.room.member"
	if !memberEvent {
		for _, c := range tally {
			if actionsKey(c.m) == baseKey {
				out.Base = actionsOf(c.m)
				break
			}
		}
	}
	for i := range set.members {
		m := &set.members[i]
		if rules[i] == nil || m.UserID == ev.Sender {
			continue
		}
		if !memberEvent && actionsKey(results[i]) == baseKey {
			continue
		}
		out.Exceptions = append(out.Exceptions, storage.PushException{UserID: m.UserID, PushActions: actionsOf(results[i])})
	}
	slices.SortFunc(out.Exceptions, func(a, b storage.PushException) int { return cmp.Compare(a.UserID, b.UserID) })
	if out.ThreadID, err = threadOf(ctx, tx, ev.PDU); err != nil {
		return nil, err
	}
	if err := tx.PutPushOutcome(ctx, *out); err != nil {
		return nil, err
	}
	if err := s.queuePushes(ctx, tx, ev, roomID, set.members, results); err != nil {
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

// evalSet is who an event is evaluated for: members (shared with the room's memory when
// version is not 0: read-only), and the room's joined member count.
type evalSet struct {
	members []push.Member
	version uint64
	count   int
}

// membersToEvaluate returns the members whose rules an event is evaluated for (the caller
// skips the sender, and remote users, who have no rules). As in Synapse, a membership event is evaluated only
// for its target (a local user other than the sender who is in the room or being invited):
// evaluating every member's rules for joins and leaves of large rooms would cost much and
// notify nobody under the default rules. Other events are evaluated for the joined members.
func (s *Service) membersToEvaluate(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event) (evalSet, error) {
	var set evalSet
	fresh := false
	if r := s.hub.LoadedRoom(roomID); r != nil {
		set.members, set.version, fresh = r.JoinedMembers(prevHead)
	} else {
		// After commit: the room may be being created in this very transaction.
		tx.AfterCommit(func() { s.loadRoomSoon(roomID) })
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		target := *ev.StateKey
		if target == ev.Sender || !s.isLocal(target) || (ev.PrevMembership != "join" && ev.Membership != "invite") {
			return evalSet{}, nil
		}
		set.count = len(set.members)
		if !fresh {
			n, _, err := tx.MemberCounts(ctx, roomID)
			if err != nil {
				return evalSet{}, err
			}
			set.count = n
		}
		name := gjson.GetBytes(ev.PDU, "content.displayname").String()
		return evalSet{members: []push.Member{{UserID: target, DisplayName: name}}, count: set.count}, nil
	}
	if !fresh {
		var err error
		if set.members, err = joinedFromStorage(ctx, tx, roomID); err != nil {
			return evalSet{}, err
		}
		set.version = 0
	}
	set.count = len(set.members)
	return set, nil
}

// loadRoomSoon brings a room that is being written to into memory in the background, so
// that its next events are evaluated from memory rather than from storage.
func (s *Service) loadRoomSoon(roomID string) {
	if _, busy := s.loading.LoadOrStore(roomID, struct{}{}); busy {
		return
	}
	go func() {
		defer s.loading.Delete(roomID)
		if _, err := s.hub.Room(context.Background(), roomID); err != nil {
			s.log.Warn("loading a room for push evaluation", "room", roomID, "err", err)
		}
	}()
}

// joinedFromStorage reads the joined members and their display names in tx (a room not in
// memory, or one that another node wrote to since this node last applied it).
func joinedFromStorage(ctx context.Context, tx storage.Tx, roomID string) ([]push.Member, error) {
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
	out := make([]push.Member, len(ms))
	for i, m := range ms {
		out[i] = push.Member{UserID: m.UserID, DisplayName: names[m.UserID]}
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

// rulesFor returns each local member's compiled rules (nil for remote members), reading
// those not cached from tx in one query.
func (s *Service) rulesFor(ctx context.Context, tx storage.Tx, members []push.Member) ([]*push.Compiled, error) {
	out := make([]*push.Compiled, len(members))
	var missing []string
	s.rulesMu.Lock()
	for i := range members {
		u := members[i].UserID
		if !s.isLocal(u) {
			continue // no rules: not evaluated
		}
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
	for i := range members {
		if out[i] == nil {
			out[i] = loaded[members[i].UserID] // nil for remote members
		}
	}
	return out, nil
}

// roomRules is the rules of a room's members, aligned with the room's shared member list
// (nil for remote members), kept while neither the list nor anyone's push rules changed: a
// message to a large room then looks up no one's rules.
type roomRules struct {
	version uint64
	gen     int64
	rules   []*push.Compiled
}

// maxRoomRules bounds the rooms whose members' rules are kept aligned.
const maxRoomRules = 10_000

func (s *Service) roomRulesFor(ctx context.Context, tx storage.Tx, roomID string, set evalSet) ([]*push.Compiled, error) {
	gen := s.rulesGen.Load()
	if set.version != 0 {
		s.rulesMu.Lock()
		rr := s.roomRules[roomID]
		s.rulesMu.Unlock()
		if rr != nil && rr.version == set.version && rr.gen == gen {
			return rr.rules, nil
		}
	}
	rules, err := s.rulesFor(ctx, tx, set.members)
	if err != nil || set.version == 0 {
		return rules, err
	}
	s.rulesMu.Lock()
	if s.rulesGen.Load() == gen {
		if len(s.roomRules) >= maxRoomRules {
			clear(s.roomRules)
		}
		s.roomRules[roomID] = &roomRules{version: set.version, gen: gen, rules: rules}
	}
	s.rulesMu.Unlock()
	return rules, nil
}

// forgetRules drops a user's cached rules when their push rules changed.
func (s *Service) forgetRules(userID, dataType string) {
	if dataType != push.AccountDataType {
		return
	}
	s.rulesGen.Add(1)
	s.rulesMu.Lock()
	delete(s.rules, userID)
	s.rulesMu.Unlock()
}
