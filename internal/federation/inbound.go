package federation

import (
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	mfed "maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"porthole/internal/mxerr"
	"porthole/internal/rooms"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
)

// Bounds of a received transaction (the spec's).
const (
	MaxTxnPDUs = 50
	MaxTxnEDUs = 100
	// txnMemory is how long a transaction's answer is kept for retries.
	txnMemory = 24 * time.Hour
)

// Inbound handles what other servers send and ask: transactions of PDUs, and the events,
// state and auth chains of rooms they are in.
type Inbound struct {
	store storage.Store
	rooms *rooms.Service
	keys  *KeyRing
	log   *slog.Logger
	// origins serialises the transactions of one origin (the spec: one at a time).
	origins sync.Map // origin → *sync.Mutex
}

// NewInbound returns the inbound side.
func NewInbound(store storage.Store, r *rooms.Service, keys *KeyRing, log *slog.Logger) *Inbound {
	return &Inbound{store: store, rooms: r, keys: keys, log: log}
}

// Transaction is the body of PUT /_matrix/federation/v1/send/{txnId}.
type Transaction struct {
	Origin         string           `json:"origin"`
	OriginServerTS int64            `json:"origin_server_ts"`
	PDUs           []jsontext.Value `json:"pdus"`
	EDUs           []jsontext.Value `json:"edus,omitempty"`
}

// PDUResult is what became of one PDU of a transaction: no error means it was handled
// (accepted, soft-failed or already known).
type PDUResult struct {
	Error string `json:"error,omitempty"`
}

// TxnResponse is the answer to a transaction.
type TxnResponse struct {
	PDUs map[string]PDUResult `json:"pdus"`
}

// Receive processes a transaction from origin: each PDU is checked and persisted on its
// own, so one bad PDU never fails the others, and the answer says what became of each.
// A transaction already received gets the answer it got then.
func (in *Inbound) Receive(ctx context.Context, origin, txnID string, txn Transaction) ([]byte, error) {
	if txn.Origin != "" && txn.Origin != origin {
		return nil, mxerr.Forbidden("The transaction's origin is not the server that signed the request")
	}
	if len(txn.PDUs) > MaxTxnPDUs || len(txn.EDUs) > MaxTxnEDUs {
		return nil, mxerr.BadJSON(fmt.Sprintf("A transaction carries at most %d PDUs and %d EDUs", MaxTxnPDUs, MaxTxnEDUs))
	}
	mu, _ := in.origins.LoadOrStore(origin, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if prev, err := in.store.FederationTxn(ctx, origin, txnID); err == nil {
		in.log.Info("transaction received again", "origin", origin, "txn", txnID)
		return prev, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, mxerr.Internal(err)
	}
	start := time.Now()
	resp := TxnResponse{PDUs: map[string]PDUResult{}}
	failed := 0
	for _, raw := range txn.PDUs {
		eventID, err := in.receivePDU(ctx, origin, raw, start.Add(fetchBudget))
		if eventID == "" {
			// Without an ID there is nothing to answer about (not an event at all).
			in.log.Info("transaction: PDU dropped", "origin", origin, "txn", txnID, "reason", err)
			continue
		}
		var r PDUResult
		if err != nil {
			r.Error = err.Error()
			failed++
			in.log.Info("transaction: PDU not accepted", "origin", origin, "txn", txnID, "event", eventID, "reason", err)
		}
		resp.PDUs[string(eventID)] = r
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	now := time.Now()
	if err := in.store.Write(ctx, func(tx storage.Tx) error {
		return tx.PutFederationTxn(ctx, origin, txnID, body, now.UnixMilli(), now.Add(-txnMemory).UnixMilli())
	}); err != nil {
		return nil, mxerr.Internal(err)
	}
	in.log.Info("transaction", "origin", origin, "txn", txnID, "pdus", len(txn.PDUs), "failed", failed, "edus", len(txn.EDUs), "dur", time.Since(start))
	return body, nil
}

// receivePDU checks one PDU and persists it, fetching what it lacks from origin until
// fetchDeadline at the latest. It returns the event's ID (empty when the
// PDU is too broken to have one) and why it was not accepted.
func (in *Inbound) receivePDU(ctx context.Context, origin string, raw jsontext.Value, fetchDeadline time.Time) (eventID id.EventID, err error) {
	defer func() {
		if r := recover(); r != nil {
			in.log.Error("panic handling a PDU", "origin", origin, "panic", r)
			err = errors.New("internal error")
		}
	}()
	var head struct {
		RoomID string `json:"room_id"`
		Type   string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("not an event: %w", err)
	}
	roomID := head.RoomID
	if roomID == "" {
		return "", errors.New("event without a room ID")
	}
	room, err := in.store.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return in.idOnly(raw), fmt.Errorf("unknown room %s", roomID)
	} else if err != nil {
		return in.idOnly(raw), fmt.Errorf("reading the room: %w", err)
	}
	version := id.RoomVersion(room.Version)
	p, eventID, err := in.CheckPDU(version, raw)
	if err != nil {
		return eventID, err
	}
	if string(p.RoomID) != roomID {
		return eventID, errors.New("room ID changed while parsing")
	}
	if err := in.allowedByACL(ctx, roomID, origin); err != nil {
		return eventID, err
	}
	// What the event lacks (auth events, prev events) is asked of the server that sent it,
	// within the transaction's fetch budget.
	deadline := time.Now().Add(fetchTimeout)
	if fetchDeadline.Before(deadline) {
		deadline = fetchDeadline
	}
	netCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	f := &fetcher{in: in, origin: origin, roomID: roomID, version: version, net: netCtx}
	outcome, err := f.persist(ctx, p, eventID, true)
	if errors.Is(err, rooms.ErrMissingState) {
		return eventID, fmt.Errorf("prev events not known here: %w", err)
	} else if err != nil {
		return eventID, fmt.Errorf("persisting: %w", err)
	}
	if outcome == rooms.Rejected {
		return eventID, errors.New("rejected by the auth rules")
	}
	return eventID, nil
}

// restrictedJoinKey fetches, before the persist transaction starts, the key of the server
// that authorised a restricted join, which the auth rules check.
func (in *Inbound) restrictedJoinKey(ctx context.Context, p *pdu.PDU) {
	if via := gjson.GetBytes(p.Content, "join_authorised_via_users_server").Str; p.Type == "m.room.member" && via != "" {
		server := id.UserID(via).Homeserver()
		for keyID := range p.Signatures[server] {
			in.keys.Key(ctx, server, keyID, time.UnixMilli(p.OriginServerTS))
		}
	}
}

// idOnly is the ID of a v3+ event of an unknown room, for the answer.
func (in *Inbound) idOnly(raw jsontext.Value) id.EventID {
	var p pdu.PDU
	if json.Unmarshal(raw, &p) != nil {
		return ""
	}
	eid, err := p.GetEventID(id.RoomV10)
	if err != nil {
		return ""
	}
	return eid
}

// CheckPDU runs the checks that come before the auth rules (spec: checks performed on
// receipt of a PDU): a valid event of the room version, at most 64 KiB as canonical JSON,
// signed by its sender's server (and, in the original format, by its event ID's), whose
// content hash matches — otherwise it is redacted, not dropped. It returns the event in
// the v3+ shape with its ID.
func (in *Inbound) CheckPDU(version id.RoomVersion, raw jsontext.Value) (*pdu.PDU, id.EventID, error) {
	canonical, err := canonicaljson.Marshal(json.RawMessage(raw))
	if err != nil {
		return nil, "", fmt.Errorf("not canonical JSON: %w", err)
	}
	p, err := roomversion.Parse(version, raw)
	if err != nil {
		return nil, "", fmt.Errorf("not an event of room version %s: %w", version, err)
	}
	var checked pdu.AnyPDU = p
	var eventID id.EventID
	if roomversion.V1Format(version) {
		var v1 pdu.RoomV1PDU
		if err := json.Unmarshal(raw, &v1); err != nil {
			return nil, "", err
		}
		checked, eventID = &v1, v1.EventID
	} else if eventID, err = p.GetEventID(version); err != nil {
		return nil, "", fmt.Errorf("computing the event ID: %w", err)
	}
	if len(canonical) > rooms.MaxPDUSize {
		return nil, eventID, fmt.Errorf("event is %d bytes, more than %d", len(canonical), rooms.MaxPDUSize)
	}
	if err := validFormat(version, p, eventID); err != nil {
		return nil, eventID, err
	}
	servers := []string{p.Sender.Homeserver()}
	if roomversion.V1Format(version) {
		if _, hs, _ := strings.Cut(string(eventID), ":"); hs != "" && hs != servers[0] {
			servers = append(servers, hs)
		}
	}
	for _, server := range servers {
		if err := checked.VerifySignature(version, server, in.keys.GetKey); err != nil {
			return nil, eventID, fmt.Errorf("signature of %s: %w", server, err)
		}
	}
	if !checked.VerifyContentHash() {
		in.log.Info("received event with a wrong content hash: redacted", "event", eventID, "sender", p.Sender)
		redacted, err := roomversion.Redact(version, raw)
		if err != nil {
			return nil, eventID, fmt.Errorf("redacting: %w", err)
		}
		if p, err = roomversion.Parse(version, redacted); err != nil {
			return nil, eventID, err
		}
	}
	p.InternalMeta.EventID = eventID
	return p, eventID, nil
}

// validFormat checks the fields every PDU must have.
func validFormat(version id.RoomVersion, p *pdu.PDU, eventID id.EventID) error {
	switch {
	case p.Type == "":
		return errors.New("event without a type")
	case !rooms.ValidUserID(string(p.Sender)):
		return fmt.Errorf("sender %q is not a user ID", p.Sender)
	case p.RoomID == "" && !(p.Type == "m.room.create" && version.RoomIDIsCreateEventID()):
		return errors.New("event without a room ID")
	case p.RoomID != "" && !rooms.ValidRoomID(string(p.RoomID)):
		return fmt.Errorf("room ID %q is not valid", p.RoomID)
	case p.Depth < 0:
		return errors.New("negative depth")
	case p.Hashes == nil:
		return errors.New("event without hashes")
	case len(p.Signatures) == 0:
		return errors.New("event without signatures")
	case len(p.PrevEvents) > 20 || len(p.AuthEvents) > 10:
		return errors.New("too many prev_events or auth_events")
	case eventID == "":
		return errors.New("event without an ID")
	}
	if _, _, ok := mfed.ParseServerName(p.Sender.Homeserver()); !ok {
		return fmt.Errorf("sender's server %q is not a server name", p.Sender.Homeserver())
	}
	return nil
}

// missing lists the events of ids that are not stored.
func (in *Inbound) missing(ctx context.Context, ids []id.EventID) ([]id.EventID, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	strs := make([]string, len(ids))
	for i, x := range ids {
		strs[i] = string(x)
	}
	evs, err := in.store.EventsByIDs(ctx, strs)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(evs))
	for _, e := range evs {
		have[e.ID] = true
	}
	var out []id.EventID
	for _, x := range ids {
		if !have[string(x)] {
			out = append(out, x)
		}
	}
	return out, nil
}
