package federation

import (
	"cmp"
	"context"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"slices"
	"time"

	mfed "maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/rooms"
	"porthole/internal/storage"
)

// Bounds of what is fetched from the origin for one received PDU whose prev or auth events
// are unknown here (Synapse's _get_missing_events_for_pdu asks for 10 events).
const (
	missingEventsLimit = 10
	// missingDepthWindow: events more than this below the room's depth are not asked for.
	missingDepthWindow = 20
	// maxFetchedEvents bounds the events fetched one by one (/event) for one PDU.
	maxFetchedEvents = 100
	// maxFetchedChain bounds an auth chain or state taken from the origin for one PDU.
	maxFetchedChain = 2000
	// fetchTimeout bounds the time spent fetching for one PDU; fetchBudget for a whole
	// transaction, so a slow origin never holds it for long.
	fetchTimeout = 20 * time.Second
	fetchBudget  = time.Minute
)

// fetcher fills what one received PDU lacks from the server that sent it.
type fetcher struct {
	in      *Inbound
	origin  string
	roomID  string
	version id.RoomVersion
	// net bounds the requests to the origin (fetchTimeout, and the transaction's budget);
	// storing what they return is not cut short by it.
	net context.Context
	// fetched counts /event requests made.
	fetched int
}

// persist stores a checked PDU of the room: unknown auth events are fetched first (as
// outliers), and when pullPrevs is set, unknown prev events through get_missing_events and,
// if a gap remains, the state before the event through /state_ids.
func (f *fetcher) persist(ctx context.Context, p *pdu.PDU, eventID id.EventID, pullPrevs bool) (rooms.Outcome, error) {
	in := f.in
	missing, err := in.missing(ctx, p.AuthEvents)
	if err != nil {
		return "", err
	}
	if len(missing) > 0 {
		if err := f.fetchAuthChain(ctx, eventID); err != nil {
			return "", fmt.Errorf("auth events %v not known here, and fetching them failed: %w", missing, err)
		}
		if missing, err = in.missing(ctx, p.AuthEvents); err != nil {
			return "", err
		} else if len(missing) > 0 {
			return "", fmt.Errorf("auth events not known here, nor given by %s: %v", f.origin, missing)
		}
	}
	in.restrictedJoinKey(ctx, p)
	outcome, err := in.rooms.PersistRemote(ctx, f.roomID, rooms.RemoteEvent{PDU: p, EventID: eventID})
	if !errors.Is(err, rooms.ErrMissingState) || !pullPrevs {
		return outcome, err
	}
	if err := f.pullMissing(ctx, p, eventID); err != nil {
		in.log.Info("get_missing_events failed", "origin", f.origin, "event", eventID, "err", err)
	}
	outcome, err = in.rooms.PersistRemote(ctx, f.roomID, rooms.RemoteEvent{PDU: p, EventID: eventID})
	if !errors.Is(err, rooms.ErrMissingState) {
		return outcome, err
	}
	// A gap remains: take the state before the event from the origin.
	before, err := f.stateBefore(ctx, eventID)
	if err != nil {
		return "", fmt.Errorf("prev events not known here, and the state before the event could not be fetched: %w", err)
	}
	return in.rooms.PersistRemote(ctx, f.roomID, rooms.RemoteEvent{PDU: p, EventID: eventID, StateBefore: before})
}

// pullMissing asks the origin for the events between the room's forward extremities and
// the event, and persists them oldest first (each without pulling further).
func (f *fetcher) pullMissing(ctx context.Context, p *pdu.PDU, eventID id.EventID) error {
	room, err := f.in.store.Room(ctx, f.roomID)
	if err != nil {
		return err
	}
	earliest := make([]id.EventID, 0, len(room.Extremities))
	for _, x := range room.Extremities {
		earliest = append(earliest, id.EventID(x))
	}
	resp, err := f.in.keys.client.GetMissingEvents(f.net, &mfed.ReqGetMissingEvents{ServerName: f.origin, RoomID: id.RoomID(f.roomID),
		EarliestEvents: earliest, LatestEvents: []id.EventID{eventID}, Limit: missingEventsLimit, MinDepth: int(max(0, room.Depth-missingDepthWindow))})
	if err != nil {
		return err
	}
	evs := f.checkAll(resp.Events, missingEventsLimit*2)
	for _, e := range evs {
		if e.id == eventID {
			continue
		}
		if _, err := f.persist(ctx, e.p, e.id, false); err != nil {
			f.in.log.Info("missing event not persisted", "origin", f.origin, "event", e.id, "err", err)
		}
	}
	return nil
}

// stateBefore fetches the state before the event from the origin (/state_ids, then
// /event for what is not stored here), stores what was missing as outliers, and returns it.
func (f *fetcher) stateBefore(ctx context.Context, eventID id.EventID) (rooms.StateMap, error) {
	resp, err := f.in.keys.client.GetStateIDs(f.net, f.origin, id.RoomID(f.roomID), eventID)
	if err != nil {
		return nil, err
	}
	if len(resp.PDUs)+len(resp.AuthChain) > maxFetchedChain {
		return nil, fmt.Errorf("state of %d events and auth chain of %d: too large", len(resp.PDUs), len(resp.AuthChain))
	}
	if err := f.fetchEvents(ctx, append(slices.Clone(resp.PDUs), resp.AuthChain...)); err != nil {
		return nil, err
	}
	ids := make([]string, len(resp.PDUs))
	for i, x := range resp.PDUs {
		ids[i] = string(x)
	}
	evs, err := f.in.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	state := rooms.StateMap{}
	for _, e := range evs {
		// Rejected events have no place in a state (as Synapse).
		if e.StateKey == nil || e.RoomID != f.roomID || e.Outlier == storage.OutlierRejected {
			continue
		}
		state[storage.StateKeyOf{Type: e.Type, StateKey: *e.StateKey}] = e.ID
	}
	if len(state) == 0 {
		return nil, errors.New("the origin gave no state")
	}
	return state, nil
}

// fetchEvents fetches the events of ids not stored here, one by one, and stores them as
// outliers.
func (f *fetcher) fetchEvents(ctx context.Context, ids []id.EventID) error {
	unknown, err := f.in.missing(ctx, ids)
	if err != nil {
		return err
	}
	if f.fetched+len(unknown) > maxFetchedEvents {
		return fmt.Errorf("%d events unknown here: more than the %d fetched for one event", len(unknown), maxFetchedEvents)
	}
	var raws []jsontext.Value
	for _, x := range unknown {
		f.fetched++
		resp, err := f.in.keys.client.GetEvent(f.net, f.origin, x)
		if err != nil {
			return fmt.Errorf("fetching %s: %w", x, err)
		}
		if len(resp.PDUs) != 1 {
			return fmt.Errorf("fetching %s: %d PDUs in the answer", x, len(resp.PDUs))
		}
		raws = append(raws, jsontext.Value(resp.PDUs[0]))
	}
	evs := f.checkAll(raws, len(raws))
	for _, e := range evs {
		if !slices.Contains(unknown, e.id) {
			return fmt.Errorf("asked for %v, given %s", unknown, e.id)
		}
	}
	return f.storeOutliers(ctx, evs)
}

// fetchAuthChain fetches the auth chain of the event from the origin and stores what is
// not here yet as outliers.
func (f *fetcher) fetchAuthChain(ctx context.Context, eventID id.EventID) error {
	resp, err := f.in.keys.client.GetEventAuthChain(f.net, f.origin, id.RoomID(f.roomID), eventID)
	if err != nil {
		return err
	}
	if len(resp.AuthChain) > maxFetchedChain {
		return fmt.Errorf("auth chain of %d events: too large", len(resp.AuthChain))
	}
	raws := make([]jsontext.Value, len(resp.AuthChain))
	for i, r := range resp.AuthChain {
		raws[i] = jsontext.Value(r)
	}
	return f.storeOutliers(ctx, f.checkAll(raws, len(raws)))
}

type checkedPDU struct {
	p  *pdu.PDU
	id id.EventID
}

// checkAll runs the receipt checks on at most limit fetched events, drops those that fail
// or are of another room, and orders the rest by depth.
func (f *fetcher) checkAll(raws []jsontext.Value, limit int) []checkedPDU {
	var out []checkedPDU
	for _, raw := range raws[:min(len(raws), limit)] {
		p, eid, err := f.in.CheckPDU(f.version, raw)
		if err != nil {
			f.in.log.Info("fetched event dropped", "origin", f.origin, "event", eid, "reason", err)
			continue
		}
		if string(p.RoomID) != f.roomID && !(p.Type == "m.room.create" && f.version.RoomIDIsCreateEventID()) {
			continue
		}
		out = append(out, checkedPDU{p, eid})
	}
	slices.SortStableFunc(out, func(a, b checkedPDU) int { return cmp.Compare(a.p.Depth, b.p.Depth) })
	return out
}

// storeOutliers stores events as outliers, each once its auth events are stored: passes
// over the list until one makes no progress.
func (f *fetcher) storeOutliers(ctx context.Context, evs []checkedPDU) error {
	for len(evs) > 0 {
		var rest []checkedPDU
		for _, e := range evs {
			missing, err := f.in.missing(ctx, e.p.AuthEvents)
			if err != nil {
				return err
			}
			if len(missing) > 0 {
				rest = append(rest, e)
				continue
			}
			if _, err := f.in.rooms.PersistRemote(ctx, f.roomID, rooms.RemoteEvent{PDU: e.p, EventID: e.id, Outlier: true}); err != nil {
				return fmt.Errorf("storing %s: %w", e.id, err)
			}
		}
		if len(rest) == len(evs) {
			return fmt.Errorf("%d fetched events whose auth events are unknown", len(rest))
		}
		evs = rest
	}
	return nil
}
