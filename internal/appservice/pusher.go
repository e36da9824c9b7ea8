package appservice

import (
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"porthole/internal/clientevent"
	"porthole/internal/outbox"
)

// Kind is the outbox kind of application-service transactions; the destination is the
// service's id.
const Kind = "appservice"

// maxPerTransaction is the most items one transaction carries (Synapse sends at most 100
// events, 100 ephemeral events and 100 to-device messages).
const maxPerTransaction = 100

// OutboxKind is how the outbox delivers to services: up to 100 queued items per
// transaction, one transaction in flight per service (the outbox's one sender per
// destination, across a cluster), retried with the same transaction ID and the same
// items (KeepBatch) after a backoff from 2 s doubling to about 8.5 minutes, as Synapse.
func (s *Service) OutboxKind() outbox.Kind {
	return outbox.Kind{
		Name:         Kind,
		Deliver:      s.deliver,
		Batch:        func(pending []outbox.Item) int { return min(len(pending), maxPerTransaction) },
		ReadAhead:    maxPerTransaction,
		KeepBatch:    true,
		QuietRetries: true,
		Timeout:      60 * time.Second,
		MinBackoff:   2 * time.Second,
		MaxBackoff:   512 * time.Second,
	}
}

// transaction is the body of PUT /_matrix/app/v1/transactions/{txnId}.
type transaction struct {
	Events            []jsontext.Value `json:"events"`
	Ephemeral         []jsontext.Value `json:"ephemeral,omitempty"`
	UnstableEphemeral []jsontext.Value `json:"de.sorunome.msc2409.ephemeral,omitempty"`
	ToDevice          []jsontext.Value `json:"de.sorunome.msc2409.to_device,omitempty"`
}

// deliver sends one batch as one transaction. Its ID is the first item's position in
// the service's queue: batches never overlap and retries keep their items, so an ID
// always names the same events.
func (s *Service) deliver(ctx context.Context, dest string, batch []outbox.Item) (outbox.Outcome, error) {
	reg := s.reg.ByID(dest)
	if reg == nil || reg.URL == "" {
		return outbox.Drop, errors.New("no such application service is configured any more")
	}
	st := s.stats[reg.ID]
	txn, err := s.buildTransaction(ctx, reg, batch)
	if err != nil {
		return outbox.RetryLater, err
	}
	txnID := strconv.FormatInt(batch[0].Seq, 10)
	err = s.call(ctx, reg, "PUT", "/_matrix/app/v1/transactions/"+url.PathEscape(txnID), nil, txn, &struct{}{})
	if err != nil && errors.Is(err, context.Canceled) {
		return outbox.RetryLater, err // the outbox is stopping: not the service's fault
	}
	if err != nil {
		st.Failures.Add(1)
		if !st.down.Swap(true) {
			s.log.Warn("application service is not taking transactions; retrying with backoff", "appservice", reg.ID, "txn", txnID, "err", err)
		}
		return outbox.RetryLater, fmt.Errorf("application service %s: %w", reg.ID, err)
	}
	if st.down.Swap(false) {
		s.log.Info("application service is taking transactions again", "appservice", reg.ID, "txn", txnID)
	}
	st.Transactions.Add(1)
	st.Events.Add(int64(len(txn.Events)))
	st.Ephemeral.Add(int64(len(txn.Ephemeral) + len(txn.UnstableEphemeral) + len(txn.ToDevice)))
	st.LastSuccess.Store(time.Now().UnixMilli())
	return outbox.Delivered, nil
}

// buildTransaction reads a batch's events (in one query) and assembles the body. Events
// gone from storage are left out; a redacted event is sent as it is now, redacted.
func (s *Service) buildTransaction(ctx context.Context, reg *Registration, batch []outbox.Item) (*transaction, error) {
	items := make([]queued, len(batch))
	var ids []string
	for i, it := range batch {
		if err := json.Unmarshal(it.Payload, &items[i]); err != nil {
			s.log.Warn("application service: unreadable queued item", "appservice", reg.ID, "seq", it.Seq, "err", err)
			continue
		}
		if items[i].Event != "" {
			ids = append(ids, items[i].Event)
		}
	}
	byID := map[string]int{}
	evs, err := s.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range evs {
		byID[evs[i].ID] = i
	}
	now := time.Now().UnixMilli()
	txn := &transaction{Events: []jsontext.Value{}}
	var ephemeral []jsontext.Value
	for _, q := range items {
		switch {
		case q.Event != "":
			if i, ok := byID[q.Event]; ok {
				txn.Events = append(txn.Events, clientevent.Encode(&evs[i]).JSON(now, "", clientevent.Reader{}))
			}
		case q.EDU != nil:
			ephemeral = append(ephemeral, jsontext.Value(q.EDU))
		case q.ToDevice != nil:
			txn.ToDevice = append(txn.ToDevice, jsontext.Value(q.ToDevice))
		}
	}
	if reg.Ephemeral {
		txn.Ephemeral = ephemeral
	}
	if reg.UnstableEphemeral {
		txn.UnstableEphemeral = ephemeral
	}
	return txn, nil
}
