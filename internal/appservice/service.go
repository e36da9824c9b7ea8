package appservice

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"porthole/internal/live"
	"porthole/internal/outbox"
	"porthole/internal/storage"
)

// Config configures the service.
type Config struct {
	ServerName string
	// QueryTimeout bounds one call to a service made while a client waits (user and alias
	// queries, third-party lookups, ping).
	QueryTimeout time.Duration
	// TrustPEM holds certificates trusted for services' TLS besides the system's roots.
	TrustPEM []byte
}

// Service is the homeserver's side of the Application Service API.
type Service struct {
	reg   *Registry
	cfg   Config
	store storage.Store
	hub   *live.Hub
	log   *slog.Logger
	ob    *outbox.Outbox // see SetOutbox
	http  *http.Client
	// pushed are the services with a URL: the only ones events are queued for.
	pushed      []*Registration
	localSuffix string
	// anyEphemeral: some pushed service asked for ephemeral data.
	anyEphemeral bool

	interestMu sync.Mutex
	interest   map[string]*memberInterest // room → which services its members interest

	stats map[string]*Stats // by service id

	protocols protocolCache
}

// Stats are one service's delivery figures, for metrics.
type Stats struct {
	Transactions, Events, Ephemeral, Failures atomic.Int64
	// LastSuccess is the unix time in milliseconds of the last delivered transaction.
	LastSuccess atomic.Int64
	// down is whether the last attempt failed (state changes are logged once).
	down atomic.Bool
}

// New returns the service for the registrations.
func New(reg *Registry, store storage.Store, hub *live.Hub, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 10 * time.Second
	}
	client, err := newHTTPClient(cfg.TrustPEM)
	if err != nil {
		return nil, err
	}
	s := &Service{reg: reg, cfg: cfg, store: store, hub: hub, log: log, http: client,
		localSuffix: ":" + cfg.ServerName, interest: map[string]*memberInterest{}, stats: map[string]*Stats{}}
	for _, r := range reg.All() {
		s.stats[r.ID] = &Stats{}
		if r.URL != "" {
			s.pushed = append(s.pushed, r)
			s.anyEphemeral = s.anyEphemeral || wantsEphemeral(r)
		}
	}
	return s, nil
}

// Registry returns the configured services.
func (s *Service) Registry() *Registry { return s.reg }

// StatsOf returns a service's delivery figures (nil for an unknown id).
func (s *Service) StatsOf(id string) *Stats { return s.stats[id] }

// SetOutbox gives the service the outbox its transactions go through (OutboxKind
// registered).
func (s *Service) SetOutbox(ob *outbox.Outbox) { s.ob = ob }

// QueueLength counts a service's queued items.
func (s *Service) QueueLength(ctx context.Context, id string) (int64, error) {
	return s.store.OutboxCount(ctx, Kind, id)
}

func (s *Service) isLocal(userID string) bool { return strings.HasSuffix(userID, s.localSuffix) }

// EnsureSenders creates the sender_localpart user of every service that lacks one: a
// service acts as its sender without registering it.
func (s *Service) EnsureSenders(ctx context.Context) error {
	for _, r := range s.reg.All() {
		if _, err := s.store.User(ctx, r.Sender); err == nil {
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		name := strings.TrimPrefix(strings.TrimSuffix(r.Sender, s.localSuffix), "@")
		err := s.store.Write(ctx, func(tx storage.Tx) error {
			return tx.CreateUser(ctx, storage.User{ID: r.Sender, DisplayName: &name, CreatedTS: time.Now().UnixMilli()})
		})
		if err != nil && !errors.Is(err, storage.ErrConflict) { // another node made it meanwhile
			return err
		}
	}
	return nil
}
