// Package notify decides who is notified of each event and tells them: it evaluates every
// local member's push rules once per event, inside the event's own transaction (so the
// counts and the pushes of an acknowledged event are as durable as the event), records the
// outcome (storage.PushOutcome: the outcome most members got plus the members who got
// another, one row per event however large the room), and queues pushes to the members'
// push gateways in the durable outbox in that same transaction. The room's unread index in
// memory (live) applies the outcome when the event is published; /sync reads counts from
// there.
//
// It also keeps pushers (/pushers, /pushers/set), serves GET /notifications, and delivers
// to push gateways (the spec's Push Gateway API) from the outbox.
package notify

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"porthole/internal/live"
	"porthole/internal/outbox"
	"porthole/internal/push"
	"porthole/internal/storage"
)

// Config configures the service.
type Config struct {
	ServerName string
	// AllowPrivate lets pushes go to loopback, private and link-local gateway addresses.
	AllowPrivate bool
	// TrustPEM holds certificates trusted for gateway TLS besides the system's roots.
	TrustPEM []byte
}

// Service is push-rule evaluation, pushers and push delivery.
type Service struct {
	cfg   Config
	store storage.Store
	hub   *live.Hub
	log   *slog.Logger

	rulesMu sync.Mutex
	rules   map[string]*push.Compiled // user → compiled rules (DefaultRules for most)
	// roomRules: per room, the rules aligned with its members (roomRulesFor).
	roomRules map[string]*roomRules
	// rulesGen changes whenever a user's account data changes, so that rules read from
	// storage while it changed are not cached.
	rulesGen atomic.Int64
	loading  sync.Map // rooms being loaded into memory (loadRoomSoon)
	// localSuffix is ":" + the server name, the end of local user IDs.
	localSuffix string

	ob        *outbox.Outbox // see SetOutbox
	gw        *gateway
	pushersMu sync.RWMutex
	pushers   map[string][]int64 // user → pusher IDs, all of them (see LoadPushers)
	badgeMu   sync.Mutex
	lastBadge map[int64]int // the badge each pusher was last sent
}

// maxCachedRules bounds the compiled-rules cache (users with rules of their own cost a
// compiled set each; users without share one).
const maxCachedRules = 100_000

// New returns the service. It hooks into the hub to forget a user's rules when their
// account data changes.
func New(store storage.Store, hub *live.Hub, cfg Config, log *slog.Logger) (*Service, error) {
	gw, err := newGateway(cfg.AllowPrivate, cfg.TrustPEM)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, store: store, hub: hub, log: log, rules: map[string]*push.Compiled{}, roomRules: map[string]*roomRules{},
		gw: gw, pushers: map[string][]int64{}, lastBadge: map[int64]int{}, localSuffix: ":" + cfg.ServerName}
	hub.SetAccountDataHook(s.forgetRules)
	return s, nil
}

func (s *Service) isLocal(userID string) bool {
	return strings.HasSuffix(userID, s.localSuffix)
}
