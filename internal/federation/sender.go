package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix"
	mfed "maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"porthole/internal/live"
	"porthole/internal/outbox"
	"porthole/internal/storage"
)

// SenderKind is the outbox kind of federation transactions; the destination is a server
// name.
const SenderKind = "federation"

// Bounds of one transaction (the spec's), and of what the sender reads ahead.
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
	// catchUpPerRoom is how many of a room's missed events are still sent to a server
	// that comes back after failures: the latest ones. The server fetches the older ones
	// it wants through /get_missing_events or /backfill, as after any gap.
	catchUpPerRoom = 50
	// catchUpWindow is how much of a backlog the catch-up looks at.
	catchUpWindow = 5000
)

// Sender sends this server's events and EDUs to other servers: an outbox kind whose items
// are queued in the transaction that wrote what they announce, grouped into transactions
// of at most 50 PDUs and 100 EDUs, one in flight per destination (on one node of a
// cluster at a time), retried with exponential backoff, and replaced by a catch-up when a
// server comes back after failures.
type Sender struct {
	name   string
	store  storage.Store
	hub    *live.Hub
	client *Client
	log    *slog.Logger
	ob     *outbox.Outbox

	// down holds the destinations whose last delivery failed (logged once, and tried again
	// at once when they send us a request).
	down sync.Map
	// servers caches the remote servers of rooms by member-list version.
	serversMu sync.Mutex
	servers   map[string]roomServers

	sent, failed atomic.Int64
}

type roomServers struct {
	version uint64
	servers []string
}

// maxCachedServerLists bounds the rooms whose server lists are kept.
const maxCachedServerLists = 10_000

// NewSender returns the sender; SetOutbox must be called before anything is queued.
func NewSender(name string, store storage.Store, hub *live.Hub, client *Client, log *slog.Logger) *Sender {
	return &Sender{name: name, store: store, hub: hub, client: client, log: log, servers: map[string]roomServers{}}
}

// SetOutbox gives the sender the outbox that delivers its items.
func (s *Sender) SetOutbox(ob *outbox.Outbox) { s.ob = ob }

// queued is an outbox payload: a PDU by event ID (read when the transaction is built) with
// its room, or an EDU as it is sent, with the key under which a later EDU replaces it in a
// catch-up ("" for EDUs that are never replaced).
type queued struct {
	Event string          `json:"e,omitempty"`
	Room  string          `json:"r,omitempty"`
	EDU   json.RawMessage `json:"x,omitempty"`
	Key   string          `json:"k,omitempty"`
}

// OutboxKind is how the outbox delivers transactions: batches of at most 50 PDUs and 100
// EDUs, a backoff from 5 s doubling up to an hour (a dead server costs one failed attempt
// an hour), and a catch-up after failures.
func (s *Sender) OutboxKind() outbox.Kind {
	return outbox.Kind{
		Name:             SenderKind,
		Deliver:          s.deliver,
		Batch:            batchSize,
		ReadAhead:        maxTxnPDUs + maxTxnEDUs,
		Compact:          s.catchUp,
		CompactReadAhead: catchUpWindow,
		QuietRetries:     true,
		Timeout:          90 * time.Second,
		MinBackoff:       5 * time.Second,
		MaxBackoff:       time.Hour,
	}
}

// Counts returns how many transactions were sent and how many attempts failed.
func (s *Sender) Counts() (sent, failed int64) { return s.sent.Load(), s.failed.Load() }

// QueueEvent queues an event written in tx for the servers of its room: those of its
// joined members before it, and for a membership event the target's server (an invited,
// kicked or banned user's, or a newly joined one's). except has the event already.
func (s *Sender) QueueEvent(ctx context.Context, tx storage.Tx, roomID, prevHead string, ev *storage.Event, except string) error {
	servers, err := s.roomServers(ctx, tx, roomID, prevHead)
	if err != nil {
		return err
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		if target := id.UserID(*ev.StateKey).Homeserver(); target != "" && target != s.name && !slices.Contains(servers, target) {
			servers = append(slices.Clone(servers), target)
		}
	}
	payload, _ := json.Marshal(queued{Event: ev.ID, Room: roomID})
	msgs := make([]outbox.Message, 0, len(servers))
	for _, srv := range servers {
		if srv != except {
			msgs = append(msgs, outbox.Message{Kind: SenderKind, Destination: srv, Payload: payload})
		}
	}
	return s.ob.Enqueue(ctx, tx, msgs...)
}

// roomServers lists the servers other than this one with members joined to the room as of
// prevHead: from the room's memory when it is current (cached per member list), else read
// in tx.
func (s *Sender) roomServers(ctx context.Context, tx storage.Tx, roomID, prevHead string) ([]string, error) {
	if r := s.hub.LoadedRoom(roomID); r != nil {
		if members, version, fresh := r.JoinedMembers(prevHead); fresh {
			s.serversMu.Lock()
			c, ok := s.servers[roomID]
			s.serversMu.Unlock()
			if ok && c.version == version {
				return c.servers, nil
			}
			users := make([]string, len(members))
			for i := range members {
				users[i] = members[i].UserID
			}
			servers := s.serversOf(users)
			s.serversMu.Lock()
			if len(s.servers) >= maxCachedServerLists {
				clear(s.servers)
			}
			s.servers[roomID] = roomServers{version: version, servers: servers}
			s.serversMu.Unlock()
			return servers, nil
		}
	}
	ms, err := tx.Members(ctx, roomID, "join")
	if err != nil {
		return nil, err
	}
	users := make([]string, len(ms))
	for i := range ms {
		users[i] = ms[i].UserID
	}
	return s.serversOf(users), nil
}

// serversOf is the sorted set of the users' servers, this one left out.
func (s *Sender) serversOf(users []string) []string {
	var out []string
	for _, u := range users {
		if srv := id.UserID(u).Homeserver(); srv != "" && srv != s.name {
			out = append(out, srv)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// JoinedServers lists the servers other than this one with members joined to the room now.
func (s *Sender) JoinedServers(ctx context.Context, roomID string) ([]string, error) {
	ms, err := s.store.Members(ctx, roomID, "join")
	if err != nil {
		return nil, err
	}
	users := make([]string, len(ms))
	for i := range ms {
		users[i] = ms[i].UserID
	}
	return s.serversOf(users), nil
}

// EDU is one ephemeral event for other servers.
type EDU struct {
	Type    string `json:"edu_type"`
	Content any    `json:"content"`
}

// QueueEDU queues an EDU for servers inside tx. replaceKey, when set, names what the EDU
// is about (a user typing in a room, a user's receipt): a catch-up sends only the latest
// EDU of each key.
func (s *Sender) QueueEDU(ctx context.Context, tx storage.Tx, servers []string, edu EDU, replaceKey string) error {
	raw, err := json.Marshal(edu)
	if err != nil {
		return err
	}
	payload, _ := json.Marshal(queued{EDU: raw, Key: replaceKey})
	msgs := make([]outbox.Message, 0, len(servers))
	for _, srv := range servers {
		if srv != s.name && srv != "" {
			msgs = append(msgs, outbox.Message{Kind: SenderKind, Destination: srv, Payload: payload})
		}
	}
	return s.ob.Enqueue(ctx, tx, msgs...)
}

// batchSize takes queued items in order up to 50 PDUs and 100 EDUs.
func batchSize(pending []outbox.Item) int {
	pdus, edus := 0, 0
	for i, it := range pending {
		if isEDU(it.Payload) {
			edus++
		} else {
			pdus++
		}
		if pdus > maxTxnPDUs || edus > maxTxnEDUs {
			return i
		}
	}
	return len(pending)
}

// isEDU tells EDU payloads from PDU ones (queued's fields are encoded in order).
func isEDU(payload []byte) bool { return bytes.HasPrefix(payload, []byte(`{"x":`)) }

// deliver sends one batch as one transaction. Its ID names the batch's first and last
// queue positions, so a retry of the same items has the same ID and a batch that grew
// has another.
func (s *Sender) deliver(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
	var eventIDs []string
	items := make([]queued, len(batch))
	for i, it := range batch {
		if err := json.Unmarshal(it.Payload, &items[i]); err != nil {
			s.log.Warn("federation: dropping an unreadable queued item", "destination", dest, "err", err)
			continue
		}
		if items[i].Event != "" {
			eventIDs = append(eventIDs, items[i].Event)
		}
	}
	evs, err := s.store.EventsByIDs(ctx, eventIDs)
	if err != nil {
		return outbox.RetryLater, err
	}
	byID := make(map[string][]byte, len(evs))
	for i := range evs {
		byID[evs[i].ID] = evs[i].PDU
	}
	txn := &mfed.ReqSendTransaction{Destination: dest, Origin: s.name, OriginServerTS: jsontime.UM(time.Now()),
		PDUs: []mfed.PDU{}, TxnID: strconv.FormatInt(batch[0].Seq, 10) + "-" + strconv.FormatInt(batch[len(batch)-1].Seq, 10)}
	for _, q := range items {
		switch {
		case q.Event != "":
			if raw := byID[q.Event]; raw != nil {
				txn.PDUs = append(txn.PDUs, raw)
			}
		case q.EDU != nil:
			txn.EDUs = append(txn.EDUs, mfed.EDU(q.EDU))
		}
	}
	if len(txn.PDUs) == 0 && len(txn.EDUs) == 0 {
		return outbox.Delivered, nil
	}
	resp, err := s.client.SendTransaction(ctx, txn)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return outbox.RetryLater, err // the outbox is stopping
		}
		s.failed.Add(1)
		var he mautrix.HTTPError
		if errors.As(err, &he) && he.Response != nil && refusedForGood(he.Response.StatusCode) {
			s.log.Warn("federation: transaction refused; dropped", "destination", dest, "txn", txn.TxnID,
				"pdus", len(txn.PDUs), "edus", len(txn.EDUs), "status", he.Response.StatusCode, "err", err)
			return outbox.Drop, err
		}
		if _, was := s.down.Swap(dest, true); !was {
			s.log.Warn("federation: destination unreachable; retrying with backoff", "destination", dest, "txn", txn.TxnID, "err", err)
		}
		return outbox.RetryLater, fmt.Errorf("sending to %s: %w", dest, err)
	}
	if _, was := s.down.LoadAndDelete(dest); was {
		s.log.Info("federation: destination reachable again", "destination", dest)
	}
	s.sent.Add(1)
	for eid, r := range resp.PDUs {
		if r.Error != "" {
			s.log.Info("federation: destination did not accept an event", "destination", dest, "event", eid, "error", r.Error)
		}
	}
	return outbox.Delivered, nil
}

// refusedForGood reports the answers after which a transaction is not sent again: the
// server understood it and will never take it (a malformed request, a server ACL, a server
// without the endpoint). Anything else (5xx, 429, 401 while it fetches our keys,
// connection failures) is tried again later.
func refusedForGood(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		return true
	}
	return false
}

// Heard is told of every verified request from another server: a destination that was
// failing is evidently back, so its backoff ends now.
func (s *Sender) Heard(origin string) {
	if _, was := s.down.LoadAndDelete(origin); !was || s.ob == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.ob.RetryNow(ctx, SenderKind, origin); err != nil {
			s.log.Warn("federation: retrying a destination that is back", "destination", origin, "err", err)
		}
	}()
}

// catchUp is what a server that comes back after failures is sent: per room only its
// latest catchUpPerRoom missed events (the server fills the gap before them as after any
// gap, asking for missing events), and of the EDUs that replace each other (typing,
// receipts, presence) only the latest of each key. Device-list updates and to-device
// messages are all kept.
func (s *Sender) catchUp(ctx context.Context, dest string, backlog []outbox.Item) []int64 {
	perRoom := map[string]int{}
	latestKey := map[string]bool{}
	var drop []int64
	for i := len(backlog) - 1; i >= 0; i-- {
		var q queued
		if json.Unmarshal(backlog[i].Payload, &q) != nil {
			continue
		}
		switch {
		case q.Event != "":
			perRoom[q.Room]++
			if perRoom[q.Room] > catchUpPerRoom {
				drop = append(drop, backlog[i].Seq)
			}
		case q.Key != "":
			if latestKey[q.Key] {
				drop = append(drop, backlog[i].Seq)
			}
			latestKey[q.Key] = true
		}
	}
	if len(drop) > 0 {
		s.log.Info("federation: catching up a destination that is back", "destination", dest, "backlog", len(backlog), "skipped", len(drop))
	}
	return drop
}
