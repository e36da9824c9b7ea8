// Package rooms creates rooms and writes room events: create, join, leave, invite, kick,
// ban, send, state, redact, aliases and the directory. Every event goes through one path
// (persist): build the PDU with mautrix (prev_events, depth, auth_events, content hash,
// signature, event ID in the room version's format), authorize it with mautrix's eventauth against the
// room's current state, store it in the same transaction as the state it changes, and
// publish it through the live hub once committed.
package rooms

import (
	"cmp"
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/appservice"
	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/visibility"
)

// MaxPDUSize is the spec's limit on an event's canonical JSON size.
const MaxPDUSize = 65536

// Config configures the rooms service.
type Config struct {
	ServerName     string
	DefaultVersion string
	Key            *federation.SigningKey
	// Resolve is state resolution, for rooms whose graph forks (federation).
	Resolve Resolver
	// GetKey finds other servers' signing keys, for the auth rules that check signatures
	// (restricted joins) on events received over federation.
	GetKey pdu.GetKeyFunc
	// AppServices are the configured application services: their exclusive alias
	// namespaces are closed to others, and unknown users and aliases of their namespaces
	// are asked of them (nil: none).
	AppServices *appservice.Registry
	// SearchAllUsers makes the user directory search every user, not only those who share
	// a room with the searcher or are in public rooms.
	SearchAllUsers bool
}

// Service writes room events.
type Service struct {
	hub   *live.Hub
	store storage.Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	// locks serialise local writers of a room (see roomLock).
	locks [256]sync.Mutex
	push  PushEvaluator // see SetPushEvaluator
	// observer is told of every timeline event in its transaction (SetEventObserver).
	observer EventObserver
	// queries asks application services about unknown users and aliases.
	queries AppServiceQueries
	// fedQueue sends local events to the rooms' other servers (SetFederationQueue).
	fedQueue FederationQueue
}

// New returns the rooms service.
func New(hub *live.Hub, store storage.Store, cfg Config, log *slog.Logger) *Service {
	return &Service{hub: hub, store: store, cfg: cfg, log: log, now: time.Now}
}

// DefaultVersion is the room version new rooms get unless the client asks for another.
func (s *Service) DefaultVersion() string { return s.cfg.DefaultVersion }

// Proto is an event to be built: what the client or the server decided, before hashes,
// signatures and graph fields are added.
type Proto struct {
	Type     string
	StateKey *string
	Content  jsontext.Value
	Sender   string
	// Redacts is the target of an m.room.redaction.
	Redacts string
	// TxnID and DeviceID make client sends idempotent. A transaction ID is scoped to the
	// device and the endpoint (the spec: a retransmission has the same ID and the same path),
	// so TxnPath names the endpoint's path without the ID ("send/m.room.message").
	TxnID    string
	TxnPath  string
	DeviceID string
	// TS is the origin_server_ts an application service asked for (0: now).
	TS int64
}

// txnKey is what a transaction is remembered by, besides sender, device and room.
func (p *Proto) txnKey() string { return p.TxnPath + "/" + p.TxnID }

func strPtr(s string) *string { return &s }

// persistContext is one room's write in progress inside a transaction.
type persistContext struct {
	s    *Service
	ctx  context.Context
	tx   storage.Tx
	room storage.Room
	pubs []live.Published
	// guestAccessChanged is set when an event may have changed the effective guest
	// access (see enforceGuestAccess).
	guestAccessChanged bool
}

// write runs fn with a persistContext for roomID inside one committed transaction, under
// the room's lock. Unknown rooms are storage.ErrNotFound.
func (s *Service) write(ctx context.Context, roomID string, fn func(pc *persistContext) error) ([]live.Published, error) {
	if roomID != "" {
		lock := s.roomLock(roomID)
		lock.Lock()
		defer lock.Unlock()
	}
	return s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		pc := &persistContext{s: s, ctx: ctx, tx: tx}
		if roomID != "" {
			room, err := tx.Room(ctx, roomID)
			if err != nil {
				return nil, err
			}
			pc.room = room
		}
		if err := fn(pc); err != nil {
			return nil, err
		}
		return pc.pubs, nil
	})
}

// parsePDU decodes a stored PDU of a room of the given version.
func parsePDU(version id.RoomVersion, raw []byte) (*pdu.PDU, error) {
	return roomversion.Parse(version, raw)
}

// canonicalContent checks that content is a JSON object in the canonical-JSON subset
// (integers only, within ±2^53) and returns its canonical form.
func canonicalContent(content jsontext.Value) (jsontext.Value, error) {
	if len(content) == 0 {
		return jsontext.Value("{}"), nil
	}
	c := content.Clone()
	if err := canonicaljson.Canonicalize(&c); err != nil {
		return nil, mxerr.BadJSON("Invalid event content: " + err.Error())
	}
	if c.Kind() != '{' {
		return nil, mxerr.BadJSON("Event content must be a JSON object")
	}
	return c, nil
}

// persist builds, authorizes and stores one event, updating the room's head, current
// state, memberships and transaction IDs. It returns the stored event; for a retried
// transaction ID, the event stored the first time (and no new one).
func (pc *persistContext) persist(p Proto) (*storage.Event, error) {
	if existing, err := pc.retried(p); existing != nil || err != nil {
		return existing, err
	}
	pre, err := pc.s.prepare(pc.ctx, pc.tx, pc.room, p)
	if err != nil {
		return nil, err
	}
	return pc.commit(pre)
}

// retried returns the event a transaction ID already produced, if it did.
func (pc *persistContext) retried(p Proto) (*storage.Event, error) {
	if p.TxnID == "" {
		return nil, nil
	}
	existing, err := pc.tx.TxnEvent(pc.ctx, p.Sender, p.DeviceID, pc.room.ID, p.txnKey())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	ev, err := pc.tx.EventByID(pc.ctx, existing)
	return &ev, err
}

// prepared is an event built, signed and authorized against a room as it was at a given
// head: everything but storing it.
type prepared struct {
	p       Proto
	room    storage.Room
	ev      *pdu.PDU
	eventID id.EventID
	raw     []byte
	// byKey is the current state the event was checked against (its auth events, the
	// history visibility, and the state it replaces).
	byKey map[storage.StateKeyOf]*storage.Event
}

// prepare builds, signs and authorizes an event on top of room as r sees it: a
// transaction, or (for a single event, under the room's lock) the committed state, so
// that the expensive part runs outside the database's write serialisation.
func (s *Service) prepare(ctx context.Context, r storage.Reader, room storage.Room, p Proto) (*prepared, error) {
	if len(p.Type) > 255 || (p.StateKey != nil && len(*p.StateKey) > 255) {
		return nil, mxerr.BadJSON("Event type and state key must be at most 255 bytes")
	}
	version := id.RoomVersion(room.Version)
	// Every redaction takes this path, whichever route sent it.
	isRedaction := p.Type == "m.room.redaction"
	if isRedaction {
		if err := prepareRedaction(&p, version); err != nil {
			return nil, err
		}
	}
	content, err := canonicalContent(p.Content)
	if err != nil {
		return nil, err
	}
	if p.Type == "m.room.tombstone" {
		if err := checkTombstone(p, room.ID, content); err != nil {
			return nil, err
		}
	}
	isCreate := p.Type == "m.room.create" && p.StateKey != nil
	if isCreate && room.HeadEventID != "" {
		return nil, mxerr.Forbidden("Changing the room create event is forbidden")
	}
	ev := &pdu.PDU{
		Type:           p.Type,
		StateKey:       p.StateKey,
		Sender:         id.UserID(p.Sender),
		Content:        content,
		OriginServerTS: cmp.Or(p.TS, s.now().UnixMilli()),
		Depth:          room.Depth + 1,
		AuthEvents:     []id.EventID{},
		PrevEvents:     []id.EventID{},
		RoomID:         id.RoomID(room.ID),
	}
	if isCreate && version.RoomIDIsCreateEventID() {
		ev.RoomID = ""
	}
	// A new event joins every fork of the room: its prev_events are the room's forward
	// extremities (at most maxPrevEvents of them, as Synapse caps it).
	for _, x := range prevEventsOf(room) {
		ev.PrevEvents = append(ev.PrevEvents, id.EventID(x))
	}
	if p.Redacts != "" && !version.RedactsInContent() {
		target := id.EventID(p.Redacts)
		ev.Redacts = &target
	}

	// Read the auth events, the history visibility and the state this event replaces.
	selection := ev.AuthEventSelection(version)
	keys := make([]storage.StateKeyOf, 0, len(selection)+2)
	for _, k := range selection {
		keys = append(keys, storage.StateKeyOf{Type: k.Type, StateKey: k.StateKey})
	}
	keys = append(keys, storage.StateKeyOf{Type: "m.room.history_visibility"})
	if p.StateKey != nil {
		keys = append(keys, storage.StateKeyOf{Type: p.Type, StateKey: *p.StateKey})
	}
	var current []storage.Event
	if !isCreate {
		current, err = r.CurrentState(ctx, room.ID, keys...)
		if err != nil {
			return nil, err
		}
	}
	byKey := make(map[storage.StateKeyOf]*storage.Event, len(current))
	for i := range current {
		byKey[storage.StateKeyOf{Type: current[i].Type, StateKey: *current[i].StateKey}] = &current[i]
	}
	authPDUs := make(map[id.EventID]*pdu.PDU, len(selection))
	for _, k := range selection {
		if se := byKey[storage.StateKeyOf{Type: k.Type, StateKey: k.StateKey}]; se != nil {
			parsed, err := parsePDU(version, se.PDU)
			if err != nil {
				return nil, fmt.Errorf("parsing auth event %s: %w", se.ID, err)
			}
			authPDUs[id.EventID(se.ID)] = parsed
			ev.AuthEvents = append(ev.AuthEvents, id.EventID(se.ID))
		}
	}
	lookup := func(eid id.EventID) (*pdu.PDU, error) {
		stored, err := r.EventByID(ctx, string(eid))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		return parsePDU(version, stored.PDU)
	}
	hashOf, err := s.referenceHashes(ctx, r, version, ev, byKey)
	if err != nil {
		return nil, err
	}
	eventID, raw, err := s.signAndAuthorize(version, ev, authPDUs, lookup, hashOf)
	if err != nil {
		return nil, err
	}
	if isRedaction {
		if err := checkRedaction(ctx, r, room, p.Sender, p.Redacts); err != nil {
			return nil, err
		}
	}
	if err := checkRelation(ctx, r, room, p, content); err != nil {
		return nil, err
	}
	return &prepared{p: p, room: room, ev: ev, eventID: eventID, raw: raw, byKey: byKey}, nil
}

// commit stores a prepared event in the transaction and publishes it with the rest.
func (pc *persistContext) commit(pre *prepared) (*storage.Event, error) {
	ctx, tx, p := pc.ctx, pc.tx, pre.p
	if p.Type == "m.room.create" && p.StateKey != nil {
		if id.RoomVersion(pc.room.Version).RoomIDIsCreateEventID() {
			pc.room.ID = "!" + string(pre.eventID)[1:]
		}
		pc.room.Creator = p.Sender
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		pc.room.CreatedPos = pos
		if err := tx.CreateRoom(ctx, pc.room); err != nil {
			if errors.Is(err, storage.ErrConflict) {
				return nil, mxerr.RoomInUse("Room ID already exists")
			}
			return nil, err
		}
		return pc.store(pre.ev, pre.raw, pre.eventID, pos, p, pre.byKey)
	}
	pos, err := tx.NextPos(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := pc.store(pre.ev, pre.raw, pre.eventID, pos, p, pre.byKey)
	if err != nil {
		return nil, err
	}
	if pc.guestAccessChanged {
		pc.guestAccessChanged = false
		if err := pc.enforceGuestAccess(); err != nil {
			return nil, err
		}
	}
	return stored, nil
}

// persistOne writes a single event as a room's only change in its transaction. The event
// is built, signed and authorized under the room's lock but outside the database's write
// serialisation, against the committed state; the transaction then stores it if the room
// has not moved on since (another node may have written to it), and builds it again
// inside otherwise.
func (s *Service) persistOne(ctx context.Context, roomID string, p Proto) (*storage.Event, error) {
	lock := s.roomLock(roomID)
	lock.Lock()
	defer lock.Unlock()
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	pre, err := s.prepare(ctx, s.store, room, p)
	if err != nil {
		return nil, err
	}
	var out *storage.Event
	_, err = s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		pc := &persistContext{s: s, ctx: ctx, tx: tx}
		if pc.room, err = tx.Room(ctx, roomID); err != nil {
			return nil, err
		}
		if existing, err := pc.retried(p); existing != nil || err != nil {
			out = existing
			return nil, err
		}
		use := pre
		if pc.room.HeadEventID != room.HeadEventID || pc.room.Depth != room.Depth {
			if use, err = s.prepare(ctx, tx, pc.room, p); err != nil {
				return nil, err
			}
		}
		if out, err = pc.commit(use); err != nil {
			return nil, err
		}
		return pc.pubs, nil
	})
	return out, err
}

// roomLock is the lock local writers of a room take (striped: rooms share a fixed set).
func (s *Service) roomLock(roomID string) *sync.Mutex {
	return &s.locks[maphash.String(lockSeed, roomID)%uint64(len(s.locks))]
}

var lockSeed = maphash.MakeSeed()

// signAndAuthorize hashes and signs a built event, derives its event ID, checks it against
// the room's auth rules (mautrix eventauth) with the given auth events (lookup finds any
// other event the rules ask for), and returns the ID and the stored JSON.
func (s *Service) signAndAuthorize(version id.RoomVersion, ev *pdu.PDU, authPDUs map[id.EventID]*pdu.PDU, lookup func(id.EventID) (*pdu.PDU, error), hashOf func(id.EventID) (pdu.Hashes, error)) (id.EventID, []byte, error) {
	var newID id.EventID
	if roomversion.V1Format(version) {
		// Room v1 and v2: the server names its events.
		newID = id.EventID("$" + auth.RandomID(18) + ":" + s.cfg.ServerName)
	}
	signer := roomversion.Signer{ServerName: s.cfg.ServerName, KeyID: s.cfg.Key.ID, Key: s.cfg.Key.Priv}
	eventID, raw, err := signer.Sign(version, ev, newID, hashOf)
	if err != nil {
		return "", nil, mxerr.BadJSON("Invalid event: " + err.Error())
	}
	getEvents := func(ids []id.EventID) ([]*pdu.PDU, error) {
		out := make([]*pdu.PDU, len(ids))
		for i, eid := range ids {
			if p, ok := authPDUs[eid]; ok {
				out[i] = p
				continue
			}
			var err error
			if out[i], err = lookup(eid); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	getKey := func(serverName string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		if serverName == s.cfg.ServerName && keyID == s.cfg.Key.ID {
			return s.cfg.Key.Pub, time.Now().Add(24 * time.Hour), nil
		}
		return "", time.Time{}, nil
	}
	if err := authorize(version, ev, nil, getEvents, getKey); err != nil {
		return "", nil, authError(err)
	}
	if canon, err := canonicaljson.CanonicalJSON(raw); err == nil && len(canon) > MaxPDUSize {
		return "", nil, mxerr.TooLarge("Event is larger than 65536 bytes")
	}
	return eventID, raw, nil
}

// referenceHashes returns how a new event of a v1-format room (versions 1 and 2) finds the
// reference hashes of the events it names: its auth events are in byKey, its prev events
// are read. Later versions name events by ID alone (nil).
func (s *Service) referenceHashes(ctx context.Context, r storage.Reader, version id.RoomVersion, ev *pdu.PDU, byKey map[storage.StateKeyOf]*storage.Event) (func(id.EventID) (pdu.Hashes, error), error) {
	if !roomversion.V1Format(version) {
		return nil, nil
	}
	raws := make(map[id.EventID][]byte, len(byKey)+len(ev.PrevEvents))
	for _, e := range byKey {
		raws[id.EventID(e.ID)] = e.PDU
	}
	var missing []string
	for _, x := range ev.PrevEvents {
		if _, ok := raws[x]; !ok {
			missing = append(missing, string(x))
		}
	}
	if len(missing) > 0 {
		prev, err := r.EventsByIDs(ctx, missing)
		if err != nil {
			return nil, err
		}
		for i := range prev {
			raws[id.EventID(prev[i].ID)] = prev[i].PDU
		}
	}
	return func(eid id.EventID) (pdu.Hashes, error) {
		raw, ok := raws[eid]
		if !ok {
			return pdu.Hashes{}, fmt.Errorf("%w: %s", roomversion.ErrMissingReference, eid)
		}
		return roomversion.ReferenceHash(version, raw)
	}, nil
}

// store writes an authorized event and everything it changes.
func (pc *persistContext) store(ev *pdu.PDU, raw []byte, eventID id.EventID, pos stream.Pos, p Proto, byKey map[storage.StateKeyOf]*storage.Event) (*storage.Event, error) {
	ctx, tx := pc.ctx, pc.tx
	stored := &storage.Event{
		Pos: pos, ID: string(eventID), RoomID: pc.room.ID, Type: p.Type, StateKey: p.StateKey, Sender: p.Sender,
		Depth: ev.Depth, OriginTS: ev.OriginServerTS, PDU: raw, TxnID: p.TxnID,
	}
	if p.TxnID != "" {
		stored.TxnDevice = p.DeviceID
	}
	// History visibility in force at the event; a visibility change counts as the more
	// open of its old and new value.
	hv := visibility.Shared
	if cur := byKey[storage.StateKeyOf{Type: "m.room.history_visibility"}]; cur != nil {
		hv = visibility.Normalize(stringField(clientevent.Content(cur), "history_visibility"))
	}
	if p.Type == "m.room.history_visibility" && p.StateKey != nil && *p.StateKey == "" {
		hv = visibility.LessRestrictive(hv, stringField(ev.Content, "history_visibility"))
	}
	stored.Visibility = hv
	if p.StateKey != nil {
		prev := byKey[storage.StateKeyOf{Type: p.Type, StateKey: *p.StateKey}]
		if prev != nil {
			unsigned := map[string]jsontext.Value{
				"replaces_state": mustQuote(prev.ID),
				"prev_content":   jsontext.Value(clientevent.Content(prev)),
				"prev_sender":    mustQuote(prev.Sender),
			}
			stored.Unsigned, _ = json.Marshal(unsigned, json.Deterministic(true))
		}
		if p.Type == "m.room.member" {
			stored.Membership = stringField(ev.Content, "membership")
			if prev != nil {
				stored.PrevMembership = prev.Membership
			}
		}
	}
	if err := tx.InsertEvent(ctx, stored); err != nil {
		return nil, err
	}
	if err := pc.storeRelation(stored); err != nil {
		return nil, err
	}
	if p.StateKey != nil {
		if err := tx.SetCurrentState(ctx, pc.room.ID, p.Type, *p.StateKey, stored.ID, pos); err != nil {
			return nil, err
		}
		if p.Type == "m.room.guest_access" && *p.StateKey == "" {
			pc.guestAccessChanged = true
		}
		if p.Type == "m.room.member" {
			if err := tx.SetMember(ctx, storage.Member{RoomID: pc.room.ID, UserID: *p.StateKey, Membership: stored.Membership, EventID: stored.ID, Pos: pos}); err != nil {
				return nil, err
			}
		}
	}
	// The new event replaces the extremities it names.
	var extremities []string
	for _, x := range pc.room.Extremities {
		if !slices.Contains(ev.PrevEvents, id.EventID(x)) {
			extremities = append(extremities, x)
		}
	}
	extremities = append(extremities, stored.ID)
	depth := max(pc.room.Depth, ev.Depth)
	// The head before this event: the room's memory is current when it applied it last.
	prevHead := pc.room.HeadEventID
	if err := tx.SetRoomHead(ctx, pc.room.ID, stored.ID, extremities, depth); err != nil {
		return nil, err
	}
	pc.room.HeadEventID, pc.room.Extremities, pc.room.Depth = stored.ID, extremities, depth
	if p.TxnID != "" {
		if err := tx.PutTxn(ctx, p.Sender, p.DeviceID, pc.room.ID, p.txnKey(), stored.ID); err != nil {
			return nil, err
		}
	}
	pub := live.Published{RoomID: pc.room.ID, Item: live.EventItem(stored), Event: stored}
	if stored.StateKey != nil {
		pub.State = []*storage.Event{stored}
	}
	if p.Type == "m.room.redaction" {
		changed, err := pc.applyRedaction(stored, p.Redacts)
		if err != nil {
			return nil, err
		}
		pub.Replaced = changed
	}
	push, err := pc.pushOutcome(stored, prevHead, byKey)
	if err != nil {
		return nil, err
	}
	pub.Push = push
	if err := pc.observe(stored, prevHead); err != nil {
		return nil, err
	}
	if err := pc.federate(stored, prevHead, ""); err != nil {
		return nil, err
	}
	pc.pubs = append(pc.pubs, pub)
	return stored, nil
}

// maxPrevEvents is the most prev_events a new event names.
const maxPrevEvents = 10

// prevEventsOf returns the prev_events of a new event of the room: its extremities, the
// most recent ones when there are more than maxPrevEvents.
func prevEventsOf(room storage.Room) []string {
	x := room.Extremities
	if len(x) > maxPrevEvents {
		x = x[len(x)-maxPrevEvents:]
	}
	return x
}

// authError maps an auth-rule rejection to 403 M_FORBIDDEN.
// authorize is eventauth.Authorize with a panic in it taken as a refusal: mautrix v0.32.0
// dereferences nil on power levels that remove a user whose level equals the sender's
// (which the rules refuse, 10.9), so any room admin or remote server could crash a request.
func authorize(version id.RoomVersion, p *pdu.PDU, authEvents []*pdu.PDU, getEvents eventauth.GetEventsFunc, getKey pdu.GetKeyFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = eventauth.AuthFailError{Index: "?", Message: "event not allowed (the auth rules could not evaluate it)"}
		}
	}()
	return eventauth.Authorize(version, p, authEvents, getEvents, getKey)
}

func authError(err error) error {
	var afe eventauth.AuthFailError
	if errors.As(err, &afe) {
		msg := afe.Message
		if msg == "" {
			msg = err.Error()
		}
		return mxerr.Forbidden(capitalize(msg)).With(err)
	}
	return mxerr.Forbidden("Event not allowed: " + err.Error()).With(err)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func stringField(content []byte, key string) string {
	var m map[string]jsontext.Value
	if json.Unmarshal(content, &m) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(m[key], &s) != nil {
		return ""
	}
	return s
}

func mustQuote(s string) jsontext.Value {
	b, _ := jsontext.AppendQuote(nil, s)
	return b
}
