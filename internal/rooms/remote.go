package rooms

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// StateMap is a room state as event IDs by (type, state_key).
type StateMap = map[storage.StateKeyOf]string

// Resolver resolves the state of a room from forked state sets (state resolution of the
// room version; internal/stateres). fetch loads events by ID, rejected ones marked.
type Resolver func(ctx context.Context, version id.RoomVersion, sets []StateMap, fetch func(ids []id.EventID) ([]*pdu.PDU, error)) (StateMap, error)

// Outcome is what became of an event received from another server.
type Outcome string

const (
	// Accepted: the event joined the room's timeline.
	Accepted Outcome = "accepted"
	// SoftFailed: the event is valid against the state before it but not against the
	// room's current state: it joins the graph, hidden from clients (spec: soft failure).
	SoftFailed Outcome = "soft_failed"
	// Rejected: the event failed the auth rules; it is kept aside so it is not fetched again.
	Rejected Outcome = "rejected"
	// Outlier: stored aside on request (an auth or state event of others).
	Outlier Outcome = "outlier"
	// Known: the event was already stored.
	Known Outcome = "known"
)

// RemoteEvent is a PDU received from another server whose format, size, content hash
// (an event whose hash does not match arrives redacted) and signatures the federation
// layer has checked. Its auth events must all be stored already (fetched as outliers);
// its prev events too, unless StateBefore is given. PDU comes from roomversion.Parse,
// whatever the room version: events of rooms v1 and v2 keep their ID and their references'
// hashes in it, and are stored in their own format.
type RemoteEvent struct {
	PDU     *pdu.PDU
	EventID id.EventID
	// Outlier stores the event aside, checked only against its own auth events: an auth or
	// state event of another event, or a room's state received when joining it.
	Outlier bool
	// StateBefore is the state before the event as another server told us, for an event
	// whose prev events we do not have (every event it names must be stored).
	StateBefore StateMap
	// RelayFor names the server that gave this server the event to pass on to the room's
	// other servers (a join, leave or knock received through send_join, send_leave or
	// send_knock); "" for events every server receives from their origin.
	RelayFor string
}

// ErrMissingState means the state before a remote event cannot be computed: one of its
// prev events is unknown or has no state of its own (an outlier). The caller fetches the
// missing events, or the state (/state_ids), and tries again.
var ErrMissingState = errors.New("state before the event is unknown")

// PersistRemote stores an event received over federation, with the checks the spec lists
// for every PDU received: the auth rules against its own auth events (else it is rejected),
// against the state before it (else rejected), and against the room's current state (else
// soft-failed). An accepted event extends the room's graph; when it forks it, the room's
// current state is resolved from the states of all forward extremities. It goes through
// the same commit and publication as a local event.
func (s *Service) PersistRemote(ctx context.Context, roomID string, re RemoteEvent) (Outcome, error) {
	if re.PDU == nil || re.EventID == "" {
		return "", errors.New("remote event without PDU or event ID")
	}
	lock := s.roomLock(roomID)
	lock.Lock()
	defer lock.Unlock()
	var outcome Outcome
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		pc := &persistContext{s: s, ctx: ctx, tx: tx}
		room, err := tx.Room(ctx, roomID)
		if err != nil {
			return nil, err
		}
		pc.room = room
		outcome, err = pc.persistRemote(re)
		return pc.pubs, err
	})
	if err != nil {
		return "", err
	}
	if outcome != Known {
		s.log.Debug("remote event", "room", roomID, "event", re.EventID, "sender", re.PDU.Sender, "type", re.PDU.Type, "outcome", outcome)
	}
	return outcome, nil
}

func (pc *persistContext) persistRemote(re RemoteEvent) (Outcome, error) {
	ctx, tx, p := pc.ctx, pc.tx, re.PDU
	version := id.RoomVersion(pc.room.Version)
	// An event we hold as a plain outlier (fetched for its auth or state role) joins the
	// timeline when it arrives as part of it; anything else is already where it belongs.
	promote := false
	if existing, err := tx.EventByID(ctx, string(re.EventID)); err == nil {
		if re.Outlier || existing.Outlier != storage.OutlierPlain {
			return Known, nil
		}
		promote = true
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	if string(p.RoomID) != pc.room.ID && !(p.Type == "m.room.create" && version.RoomIDIsCreateEventID()) {
		return "", fmt.Errorf("event %s is for room %s, not %s", re.EventID, p.RoomID, pc.room.ID)
	}
	fetch := pc.pduFetcher()
	getKey := pc.s.cfg.GetKey
	// 1. The auth rules against the event's own auth events.
	if err := authorize(version, p, nil, fetch, getKey); err != nil {
		return Rejected, pc.storeAside(re, storage.OutlierRejected, err.Error(), nil)
	}
	if re.Outlier {
		return Outlier, pc.storeAside(re, storage.OutlierPlain, "", nil)
	}
	// 2. Against the state before the event.
	before := re.StateBefore
	if before == nil {
		var err error
		if before, err = pc.stateBefore(p, fetch); err != nil {
			return "", err
		}
	}
	if err := pc.authorizeAgainst(version, p, before, fetch, getKey); err != nil {
		if promote {
			return Rejected, nil
		}
		return Rejected, pc.storeAside(re, storage.OutlierRejected, err.Error(), nil)
	}
	after := withEvent(before, p, re.EventID)
	// 3. Against the room's current state: a failure is a soft failure.
	current, err := tx.CurrentStateIDs(ctx, pc.room.ID)
	if err != nil {
		return "", err
	}
	if promote {
		// Checked again as a timeline event: a failure leaves the outlier as it was.
		if pc.authorizeAgainst(version, p, current, fetch, getKey) != nil {
			return SoftFailed, nil
		}
		if err := tx.DeleteOutlier(ctx, string(re.EventID)); err != nil {
			return "", err
		}
	} else if err := pc.authorizeAgainst(version, p, current, fetch, getKey); err != nil {
		return SoftFailed, pc.storeAside(re, storage.OutlierSoftFailed, err.Error(), after)
	}
	return Accepted, pc.acceptRemote(re, before, after, current, fetch)
}

// acceptRemote adds an event that passed every check to the timeline and the graph.
func (pc *persistContext) acceptRemote(re RemoteEvent, before, after, current StateMap, fetch func([]id.EventID) ([]*pdu.PDU, error)) error {
	ctx, tx, p := pc.ctx, pc.tx, re.PDU
	version := id.RoomVersion(pc.room.Version)
	pos, err := tx.NextPos(ctx)
	if err != nil {
		return err
	}
	// The new extremities: the event replaces those it names.
	var extremities, others []string
	for _, x := range pc.room.Extremities {
		if !slices.Contains(p.PrevEvents, id.EventID(x)) {
			extremities = append(extremities, x)
			others = append(others, x)
		}
	}
	extremities = append(extremities, string(re.EventID))
	// The room's new current state: the event's state after it when it extends every
	// fork; otherwise the resolution of every extremity's state.
	newCurrent := after
	if len(others) > 0 {
		sets := []StateMap{after}
		for _, x := range others {
			st, err := pc.stateAfterID(x)
			if err != nil {
				return err
			}
			sets = append(sets, st)
		}
		if pc.s.cfg.Resolve == nil {
			return errors.New("the room forked and no state resolution is configured")
		}
		if newCurrent, err = pc.s.cfg.Resolve(ctx, version, sets, withEventFetched(fetch, re)); err != nil {
			return fmt.Errorf("resolving state: %w", err)
		}
	}
	stored, err := pc.remoteEvent(re, before, pos)
	if err != nil {
		return err
	}
	// The event's state after it is recorded only when it is not the room's (a fork).
	if !sameState(after, newCurrent) {
		g := storage.StateGroup{RoomID: pc.room.ID, BasePos: pos, Entries: stateDiff(newCurrent, after)}
		if stored.StateGroup, err = tx.NewStateGroup(ctx, g); err != nil {
			return err
		}
	}
	if err := tx.InsertEvent(ctx, stored); err != nil {
		return err
	}
	if err := pc.storeRelation(stored); err != nil {
		return err
	}
	changes, err := pc.applyCurrentState(current, newCurrent, pos)
	if err != nil {
		return err
	}
	depth := max(pc.room.Depth, p.Depth)
	prevHead := pc.room.HeadEventID
	if err := tx.SetRoomHead(ctx, pc.room.ID, stored.ID, extremities, depth); err != nil {
		return err
	}
	pc.room.HeadEventID, pc.room.Extremities, pc.room.Depth = stored.ID, extremities, depth
	pub := live.Published{RoomID: pc.room.ID, Item: live.EventItem(stored), Event: stored, State: changes}
	// Local members are notified of remote events as of local ones, judged against the
	// state the event was authorized against.
	if pub.Push, err = pc.remotePushOutcome(stored, prevHead, before); err != nil {
		return err
	}
	if err := pc.observe(stored, prevHead); err != nil {
		return err
	}
	if re.RelayFor != "" {
		if err := pc.federate(stored, prevHead, re.RelayFor); err != nil {
			return err
		}
	}
	if p.Type == "m.room.redaction" {
		if target := redactsOf(p, version); target != "" && pc.remoteMayRedact(p, target, newCurrent) {
			if pub.Replaced, err = pc.applyRedaction(stored, target); err != nil {
				return err
			}
		}
	}
	pc.pubs = append(pc.pubs, pub)
	if pc.guestAccessChanged {
		pc.guestAccessChanged = false
		return pc.enforceGuestAccess()
	}
	return nil
}

// withEventFetched serves the event being persisted (not stored yet) besides the stored
// ones: the state after it, which is resolved with the others, names it.
func withEventFetched(fetch func([]id.EventID) ([]*pdu.PDU, error), re RemoteEvent) func([]id.EventID) ([]*pdu.PDU, error) {
	return func(ids []id.EventID) ([]*pdu.PDU, error) {
		out, err := fetch(ids)
		if err != nil {
			return nil, err
		}
		for i, x := range ids {
			if x == re.EventID && out[i] == nil {
				p := *re.PDU
				p.InternalMeta.EventID = re.EventID
				out[i] = &p
			}
		}
		return out, nil
	}
}

// remoteEvent builds the stored form of a remote event at pos, with what the server
// derives from the state before it (as for a local event: see persistContext.store).
func (pc *persistContext) remoteEvent(re RemoteEvent, before StateMap, pos stream.Pos) (*storage.Event, error) {
	p := re.PDU
	raw, err := roomversion.Encode(id.RoomVersion(pc.room.Version), p)
	if err != nil {
		return nil, err
	}
	e := &storage.Event{Pos: pos, ID: string(re.EventID), RoomID: pc.room.ID, Type: p.Type, StateKey: p.StateKey,
		Sender: string(p.Sender), Depth: p.Depth, OriginTS: p.OriginServerTS, PDU: raw}
	hv := visibility.Shared
	if hvID := before[storage.StateKeyOf{Type: "m.room.history_visibility"}]; hvID != "" {
		if ev, err := pc.tx.EventByID(pc.ctx, hvID); err == nil {
			hv = visibility.Normalize(stringField(clientevent.Content(&ev), "history_visibility"))
		}
	}
	if p.Type == "m.room.history_visibility" && p.StateKey != nil && *p.StateKey == "" {
		hv = visibility.LessRestrictive(hv, stringField(p.Content, "history_visibility"))
	}
	e.Visibility = hv
	if p.StateKey != nil {
		if prevID := before[storage.StateKeyOf{Type: p.Type, StateKey: *p.StateKey}]; prevID != "" {
			if prev, err := pc.tx.EventByID(pc.ctx, prevID); err == nil {
				unsigned := map[string]jsontext.Value{
					"replaces_state": mustQuote(prev.ID),
					"prev_content":   jsontext.Value(clientevent.Content(&prev)),
					"prev_sender":    mustQuote(prev.Sender),
				}
				e.Unsigned, _ = json.Marshal(unsigned, json.Deterministic(true))
				e.PrevMembership = prev.Membership
			}
		}
		if p.Type == "m.room.member" {
			e.Membership = stringField(p.Content, "membership")
		}
	}
	return e, nil
}

// applyCurrentState writes the difference between the room's current state and its new
// one as state deltas at pos, with the memberships it changes, and returns the events that
// became current (an event without an ID for a key that left the state).
func (pc *persistContext) applyCurrentState(current, next StateMap, pos stream.Pos) ([]*storage.Event, error) {
	ctx, tx := pc.ctx, pc.tx
	var ids []string
	var gone []storage.StateKeyOf
	for k, v := range next {
		if current[k] != v {
			ids = append(ids, v)
		}
	}
	for k := range current {
		if _, ok := next[k]; !ok {
			gone = append(gone, k)
		}
	}
	evs, err := tx.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	var changes []*storage.Event
	for i := range evs {
		e := &evs[i]
		if err := tx.SetCurrentState(ctx, pc.room.ID, e.Type, *e.StateKey, e.ID, pos); err != nil {
			return nil, err
		}
		if e.Type == "m.room.member" {
			if err := tx.SetMember(ctx, storage.Member{RoomID: pc.room.ID, UserID: *e.StateKey, Membership: e.Membership, EventID: e.ID, Pos: pos}); err != nil {
				return nil, err
			}
		}
		if e.Type == "m.room.guest_access" && *e.StateKey == "" {
			pc.guestAccessChanged = true
		}
		changes = append(changes, e)
	}
	for _, k := range gone {
		if err := tx.SetCurrentState(ctx, pc.room.ID, k.Type, k.StateKey, "", pos); err != nil {
			return nil, err
		}
		if k.Type == "m.room.member" {
			if err := tx.SetMember(ctx, storage.Member{RoomID: pc.room.ID, UserID: k.StateKey, Membership: visibility.Leave, Pos: pos}); err != nil {
				return nil, err
			}
		}
		sk := k.StateKey
		changes = append(changes, &storage.Event{RoomID: pc.room.ID, Type: k.Type, StateKey: &sk})
	}
	return changes, nil
}

// storeAside keeps an event out of the timeline: rejected, soft-failed or an outlier.
// after, when known, is its state after it (a soft-failed event may be built upon).
func (pc *persistContext) storeAside(re RemoteEvent, status, reason string, after StateMap) error {
	ctx, tx, p := pc.ctx, pc.tx, re.PDU
	raw, err := roomversion.Encode(id.RoomVersion(pc.room.Version), p)
	if err != nil {
		return err
	}
	pos, err := tx.NextOutlierPos(ctx)
	if err != nil {
		return err
	}
	e := &storage.Event{Pos: pos, ID: string(re.EventID), RoomID: pc.room.ID, Type: p.Type, StateKey: p.StateKey,
		Sender: string(p.Sender), Depth: p.Depth, OriginTS: p.OriginServerTS, PDU: raw, Visibility: visibility.Joined,
		Outlier: status, OutlierReason: truncate(reason, 500)}
	if p.Type == "m.room.member" && p.StateKey != nil {
		e.Membership = stringField(p.Content, "membership")
	}
	if after != nil {
		// Based on the room's current state as of its latest event.
		g := storage.StateGroup{RoomID: pc.room.ID, BasePos: pc.s.hub.Notifier().Current(), Entries: nil}
		base, err := tx.StateIDsAt(ctx, pc.room.ID, g.BasePos)
		if err != nil {
			return err
		}
		g.Entries = stateDiff(base, after)
		if e.StateGroup, err = tx.NewStateGroup(ctx, g); err != nil {
			return err
		}
	}
	if status == storage.OutlierRejected {
		pc.s.log.Info("rejected remote event", "room", pc.room.ID, "event", re.EventID, "sender", p.Sender, "reason", reason)
	}
	return tx.InsertEvent(ctx, e)
}

// stateBefore resolves the states after the event's prev events.
func (pc *persistContext) stateBefore(p *pdu.PDU, fetch func([]id.EventID) ([]*pdu.PDU, error)) (StateMap, error) {
	if len(p.PrevEvents) == 0 {
		return StateMap{}, nil
	}
	var sets []StateMap
	for _, prev := range p.PrevEvents {
		st, err := pc.stateAfterID(string(prev))
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	if len(sets) == 1 {
		return sets[0], nil
	}
	if pc.s.cfg.Resolve == nil {
		return nil, errors.New("the event merges forks and no state resolution is configured")
	}
	return pc.s.cfg.Resolve(pc.ctx, id.RoomVersion(pc.room.Version), sets, fetch)
}

// stateAfterID is the room's state after a stored event: the room's state as of its
// position, or its state group.
func (pc *persistContext) stateAfterID(eventID string) (StateMap, error) {
	e, err := pc.tx.EventByID(pc.ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s is unknown", ErrMissingState, eventID)
	} else if err != nil {
		return nil, err
	}
	return StateAfter(pc.ctx, pc.tx, &e)
}

// StateAfter is the state after a stored event (the federation API serves the state at
// events from it).
func StateAfter(ctx context.Context, r storage.Reader, e *storage.Event) (StateMap, error) {
	if e.StateGroup == 0 {
		if e.Outlier != "" {
			return nil, fmt.Errorf("%w: %s is an outlier", ErrMissingState, e.ID)
		}
		return r.StateIDsAt(ctx, e.RoomID, e.Pos)
	}
	g, err := r.StateGroup(ctx, e.StateGroup)
	if err != nil {
		return nil, err
	}
	st, err := r.StateIDsAt(ctx, e.RoomID, g.BasePos)
	if err != nil {
		return nil, err
	}
	for k, v := range g.Entries {
		if v == "" {
			delete(st, k)
		} else {
			st[k] = v
		}
	}
	return st, nil
}

// authorizeAgainst checks the auth rules for p with its auth events taken from state.
func (pc *persistContext) authorizeAgainst(version id.RoomVersion, p *pdu.PDU, state StateMap, fetch func([]id.EventID) ([]*pdu.PDU, error), getKey pdu.GetKeyFunc) error {
	var ids []id.EventID
	for _, k := range p.AuthEventSelection(version) {
		if v := state[storage.StateKeyOf{Type: k.Type, StateKey: k.StateKey}]; v != "" {
			ids = append(ids, id.EventID(v))
		}
	}
	authEvents, err := fetch(ids)
	if err != nil {
		return err
	}
	if authEvents == nil {
		authEvents = []*pdu.PDU{}
	}
	return authorize(version, p, authEvents, fetch, getKey)
}

// pduFetcher loads stored events (timeline or aside) as PDUs for the auth rules and state
// resolution, with their IDs and rejections.
func (pc *persistContext) pduFetcher() func([]id.EventID) ([]*pdu.PDU, error) {
	return func(ids []id.EventID) ([]*pdu.PDU, error) {
		strs := make([]string, len(ids))
		for i, x := range ids {
			strs[i] = string(x)
		}
		evs, err := pc.tx.EventsByIDs(pc.ctx, strs)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]*storage.Event, len(evs))
		for i := range evs {
			byID[evs[i].ID] = &evs[i]
		}
		out := make([]*pdu.PDU, len(ids))
		for i, x := range ids {
			e := byID[string(x)]
			if e == nil {
				continue
			}
			p, err := parsePDU(id.RoomVersion(pc.room.Version), e.PDU)
			if err != nil {
				return nil, fmt.Errorf("stored event %s: %w", e.ID, err)
			}
			p.InternalMeta.EventID = id.EventID(e.ID)
			p.InternalMeta.Rejected = e.Outlier == storage.OutlierRejected
			out[i] = p
		}
		return out, nil
	}
}

// remoteMayRedact reports whether a received redaction is applied: its sender's server
// also sent the target, or the sender has the room's redact power (as Synapse checks).
func (pc *persistContext) remoteMayRedact(p *pdu.PDU, target string, state StateMap) bool {
	orig, err := pc.tx.EventByID(pc.ctx, target)
	if err != nil || orig.RoomID != pc.room.ID || orig.Type == "m.room.create" {
		return false
	}
	if id.UserID(orig.Sender).Homeserver() == p.Sender.Homeserver() {
		return true
	}
	pl, err := powerLevels(pc.ctx, pc.tx, pc.room)
	return err == nil && pl.GetUserLevel(p.Sender) >= pl.Redact()
}

// redactsOf is the target of a redaction in any room version.
func redactsOf(p *pdu.PDU, version id.RoomVersion) string {
	if version.RedactsInContent() {
		return gjson.GetBytes(p.Content, "redacts").Str
	}
	if p.Redacts != nil {
		return string(*p.Redacts)
	}
	return ""
}

// withEvent is state with a state event added (non-state events change nothing).
func withEvent(state StateMap, p *pdu.PDU, eventID id.EventID) StateMap {
	out := make(StateMap, len(state)+1)
	for k, v := range state {
		out[k] = v
	}
	if p.StateKey != nil {
		out[storage.StateKeyOf{Type: p.Type, StateKey: *p.StateKey}] = string(eventID)
	}
	return out
}

func sameState(a, b StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// stateDiff lists what must be set on top of base to get to target ("" removes a key).
func stateDiff(base, target StateMap) map[storage.StateKeyOf]string {
	out := map[storage.StateKeyOf]string{}
	for k, v := range target {
		if base[k] != v {
			out[k] = v
		}
	}
	for k := range base {
		if _, ok := target[k]; !ok {
			out[k] = ""
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
