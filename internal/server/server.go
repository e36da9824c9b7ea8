// Package server is the composition root: it opens storage, wires the services and the
// HTTP API, and runs the listener with graceful shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"porthole/internal/api/client"
	fedapi "porthole/internal/api/federation"
	"porthole/internal/appservice"
	"porthole/internal/auth"
	"porthole/internal/config"
	"porthole/internal/e2ee"
	"porthole/internal/ephemeral"
	"porthole/internal/federation"
	"porthole/internal/httpx"
	"porthole/internal/live"
	"porthole/internal/media"
	"porthole/internal/notify"
	"porthole/internal/outbox"
	"porthole/internal/ratelimit"
	"porthole/internal/reports"
	"porthole/internal/rooms"
	"porthole/internal/storage"
	"porthole/internal/storage/sqlstore"
	"porthole/internal/stream"
	"porthole/internal/syncer"
	"porthole/internal/web"
)

// Server is a wired homeserver.
type Server struct {
	cancel   context.CancelFunc
	accounts *auth.Service
	cfg      config.Config
	log      *slog.Logger
	store    *sqlstore.Store
	notifier *stream.Notifier
	hub      *live.Hub
	eph      *ephemeral.Service
	api      *client.API
	syncer   *syncer.Syncer
	outbox   *outbox.Outbox
	pushes   *notify.Service
	appsvc   *appservice.Service
	rooms    *rooms.Service
	media    *media.Service
	handler  http.Handler
	pages    *web.Pages // nil when web.enabled is off
	// Federation (nil unless configured).
	fedClient  *federation.Client
	fedKeys    *federation.KeyRing
	fedSender  *federation.Sender
	fedAPI     *fedapi.API
	fedHandler http.Handler
}

// New opens the data directory and database and wires everything.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	key, err := rooms.LoadOrCreateKey(filepath.Join(cfg.DataDir, "signing.key"))
	if err != nil {
		return nil, err
	}
	store, err := sqlstore.Open(ctx, cfg.DatabaseURL(), sqlstore.Options{
		SQLiteReaders: cfg.SQLiteReaders, PGMaxConns: cfg.PGMaxConns, PGConnMaxLifetime: cfg.PGConnMaxLifetime,
	})
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	pos, err := store.MaxPos(ctx)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("reading stream position: %w", err)
	}
	// Application services: a registration that does not parse refuses the start.
	registry, err := appservice.Load(cfg.AppServiceConfigFiles, cfg.ServerName)
	if err != nil {
		store.Close()
		return nil, err
	}
	notifier := stream.NewNotifier(pos)
	hub := live.NewHub(store, notifier, cfg.PeekWindow, log)
	accounts := auth.New(store, auth.Config{
		ServerName: cfg.ServerName, OpenRegistration: cfg.Registration == "open",
		GuestsEnabled: cfg.Guests == "on", BcryptCost: cfg.BcryptCost, AppServices: registry,
	}, log)
	roomsCfg := rooms.Config{ServerName: cfg.ServerName, DefaultVersion: cfg.DefaultRoomVer, Key: key, AppServices: registry,
		SearchAllUsers: cfg.UserDirectory.SearchAllUsers}
	var fedClient *federation.Client
	var fedKeys *federation.KeyRing
	if cfg.Federation.Enabled() {
		if fedClient, fedKeys, err = newFederation(ctx, cfg, store, key, log); err != nil {
			store.Close()
			return nil, err
		}
		// Signatures of remote events (restricted joins) are checked with fetched keys.
		roomsCfg.GetKey = fedKeys.GetKey
	}
	// State resolution re-checks restricted joins' signatures with the same keys.
	roomsCfg.Resolve = stateResolver(roomsCfg.GetKey)
	roomSvc := rooms.New(hub, store, roomsCfg, log)
	var trust []byte
	if cfg.PushTrust != "" {
		if trust, err = os.ReadFile(cfg.PushTrust); err != nil {
			store.Close()
			return nil, fmt.Errorf("push_trust: %w", err)
		}
	}
	appservices, err := appservice.New(registry, store, hub, appservice.Config{ServerName: cfg.ServerName, QueryTimeout: cfg.AppServiceQueryTimeout, TrustPEM: trust}, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	if err := appservices.EnsureSenders(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("creating application services' sender users: %w", err)
	}
	pushes, err := notify.New(store, hub, notify.Config{ServerName: cfg.ServerName, AllowPrivate: cfg.PushAllowPrivate == "on", TrustPEM: trust}, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	// The one outbox: push gateways, application services and federation transactions.
	kinds := []outbox.Kind{pushes.OutboxKind(), appservices.OutboxKind()}
	var fedSender *federation.Sender
	if fedClient != nil {
		fedSender = federation.NewSender(cfg.ServerName, store, hub, fedClient, log)
		kinds = append(kinds, fedSender.OutboxKind())
		roomSvc.SetFederationQueue(fedSender)
	}
	ob := outbox.New(store, outbox.Options{Log: log}, kinds...)
	pushes.SetOutbox(ob)
	appservices.SetOutbox(ob)
	if fedSender != nil {
		fedSender.SetOutbox(ob)
	}
	roomSvc.SetEventObserver(appservices)
	roomSvc.SetAppServiceQueries(appservices)
	hub.SetCommitObserver(appservices.CommitObserved)
	if err := pushes.LoadPushers(ctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("loading pushers: %w", err)
	}
	roomSvc.SetPushEvaluator(pushes)
	eph := ephemeral.New(hub, store, log)
	eph.SetReceiptHook(pushes.ReceiptSent)
	keys := e2ee.New(hub, store, e2ee.Config{ServerName: cfg.ServerName, InboxLimit: cfg.ToDeviceInboxLimit}, log)
	// Device changes (logins, logouts, deletions) remove the devices' keys and inboxes and
	// are announced as device-list changes.
	accounts.DeviceTx = keys.DeviceTx
	sy := syncer.New(hub, store, syncer.Config{DefaultTimeout: cfg.LongPollDefault, MaxTimeout: cfg.LongPollMax, MinTimeout: cfg.LongPollMin}, log)
	var limits *client.Limits
	if cfg.RateLimit == "on" {
		limits = &client.Limits{
			IP:       ratelimit.New(cfg.IPRequestsPerSec, cfg.IPRequestsBurst),
			User:     ratelimit.New(cfg.UserRequestsPerS, cfg.UserRequestsBurst),
			Register: ratelimit.New(cfg.RegisterPerSec, cfg.RegisterBurst),
			Polls:    client.NewPollLimiter(cfg.MaxPollsPerUser, cfg.MaxPollsPerIP),
		}
	}
	api := client.New(accounts, roomSvc, eph, sy, keys, client.Config{
		ServerName: cfg.ServerName, BaseURL: cfg.BaseURL(), MaxBody: cfg.MaxRequestBody, DefaultTimeout: cfg.LongPollDefault,
		Limits: limits, Proxies: client.ParseProxies(cfg.TrustedProxies),
		Turn: client.Turn{URIs: cfg.TurnURIs, SharedSecret: cfg.TurnSharedSecret, Username: cfg.TurnUsername, Password: cfg.TurnPassword,
			UserLifetime: cfg.TurnUserLifetime, AllowGuests: cfg.TurnAllowGuests},
	}, log)
	api.SetNotify(pushes)
	api.SetAppServices(appservices)
	api.SetReports(reports.New(store, reports.Config{ServerName: cfg.ServerName, EventVisible: func(ctx context.Context, s *auth.Session, roomID, eventID string) error {
		_, err := sy.Event(ctx, s, roomID, eventID)
		return err
	}}, log))
	mediaSvc, err := newMedia(cfg, store, limits != nil, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	api.SetMedia(mediaSvc)
	if err := ob.Start(); err != nil {
		mediaSvc.Close()
		store.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, store: store, notifier: notifier, hub: hub, eph: eph, api: api, accounts: accounts, syncer: sy, rooms: roomSvc,
		outbox: ob, pushes: pushes, fedClient: fedClient, fedKeys: fedKeys, fedSender: fedSender, appsvc: appservices, media: mediaSvc}
	if cfg.Web.Enabled == "on" {
		wc := web.Config{Path: cfg.Web.Path, BaseURL: cfg.PublicBaseURL, GuestPosting: cfg.Web.GuestPosting == "on",
			FrameAncestors: cfg.Web.FrameAncestors, NoIndex: cfg.Web.NoIndex == "on", LimitKey: api.LimitKey,
			CommentRooms: cfg.Web.CommentRooms, CommentRoomsOwner: cfg.Web.CommentRoomsOwner, ServerName: cfg.ServerName}
		if cfg.Web.CommentRooms != "" {
			// The owner is an account nobody logs in to: a random password nobody knows.
			local := strings.TrimPrefix(strings.SplitN(cfg.Web.CommentRoomsOwner, ":", 2)[0], "@")
			if _, created, err := accounts.CreateUser(ctx, local, auth.RandomID(32), false); err == nil && created {
				log.Info("created the comment rooms' owner", "user", cfg.Web.CommentRoomsOwner)
			} else if err != nil && !errors.Is(err, auth.ErrUserExists) {
				store.Close()
				return nil, fmt.Errorf("web.comment_rooms_owner: %w", err)
			}
		}
		if cfg.RateLimit == "on" {
			wc.Limiter = ratelimit.New(cfg.Web.PagesPerSecond, cfg.Web.PagesBurst)
		}
		s.pages = web.New(roomSvc, sy, mediaSvc, wc, log)
	}
	if fedKeys != nil {
		var fedLimit *ratelimit.Limiter
		if cfg.RateLimit == "on" {
			fedLimit = ratelimit.New(cfg.Federation.RequestsPerSec, cfg.Federation.RequestsBurst)
		}
		inbound := federation.NewInbound(store, roomSvc, fedKeys, log)
		s.fedAPI = fedapi.New(fedKeys, inbound, roomSvc, fedapi.Config{ServerName: cfg.ServerName, WellKnownServer: cfg.Federation.WellKnownServer,
			MaxBody: cfg.Federation.MaxRequestBody, Limit: fedLimit, Version: version()}, log)
		s.fedAPI.SetHeard(fedSender.Heard)
	}
	s.handler, s.fedHandler = s.buildHandlers()
	s.startCrossNode()
	log.Info("porthole ready", "server_name", cfg.ServerName, "database", redactDSN(cfg.DatabaseURL()), "stream_pos", pos, "key", key.ID)
	return s, nil
}

// newMedia opens the media store (on disk, content-addressed) and the repository.
func newMedia(cfg config.Config, store storage.Store, rateLimited bool, log *slog.Logger) (*media.Service, error) {
	blobs, err := media.NewDiskBlobs(cfg.MediaPath())
	if err != nil {
		return nil, err
	}
	cutoff, err := cfg.MediaLegacyCutoff()
	if err != nil {
		return nil, err
	}
	m := cfg.Media
	mc := media.Config{
		ServerName: cfg.ServerName, MaxUploadSize: m.MaxUploadSize, MaxImagePixels: m.MaxImagePixels,
		Quota: m.UploadQuota, QuotaPeriod: m.QuotaPeriod, MaxPending: m.MaxPending,
		PendingExpiry: m.PendingExpiry, LegacyCutoff: cutoff, URLPreview: m.URLPreview == "on",
	}
	if rateLimited {
		mc.UploadRate = ratelimit.New(m.UploadsPerSec, m.UploadsBurst)
	}
	return media.New(store, blobs, mc, log), nil
}

func (s *Server) buildHandlers() (clientAPI, federationAPI http.Handler) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "porthole_http_requests_total", Help: "HTTP requests by route and status."}, []string{"route", "status"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "porthole_http_request_duration_seconds", Help: "HTTP request durations by route (long-polls included).",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 60}}, []string{"route"})
	reg.MustRegister(requests, durations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_longpoll_waiting", Help: "Requests parked in a long-poll (/events, /sync)."},
			func() float64 { return float64(s.notifier.Waiting()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "porthole_notifier_wakeups_total", Help: "Notifier wake calls."},
			func() float64 { return float64(s.notifier.Wakeups()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "porthole_notifier_keys_woken_total", Help: "Listened keys (rooms, users) woken."},
			func() float64 { return float64(s.notifier.KeysWoken()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_stream_position", Help: "Highest committed stream position."},
			func() float64 { return float64(s.notifier.Current()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "porthole_outbox_delivered_total", Help: "Outbox deliveries that succeeded (push gateways, application services, federation transactions)."},
			func() float64 { d, _, _ := s.outbox.Counts(); return float64(d) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "porthole_outbox_failed_total", Help: "Outbox deliveries that failed and will be retried."},
			func() float64 { _, f, _ := s.outbox.Counts(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "porthole_outbox_dropped_total", Help: "Outbox items given up (undeliverable, or older than their kind allows)."},
			func() float64 { _, _, d := s.outbox.Counts(); return float64(d) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "porthole_push_refused_addresses_total", Help: "Push gateway connections refused: not a public address."},
			func() float64 { return float64(s.pushes.RefusedAddresses()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_active_rooms", Help: "Rooms held in memory with their windows."},
			func() float64 { return float64(s.hub.ActiveRooms()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_notifier_keys", Help: "Rooms and users with a registered long-poll."},
			func() float64 { return float64(s.notifier.ListenedKeys()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_notifier_subscriptions", Help: "(room, user) subscriptions of waiting /sync requests."},
			func() float64 { return float64(s.notifier.Subscriptions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_filter_cache_bytes", Help: "Estimated memory held by parsed sync filters."},
			func() float64 { _, b := s.api.FilterCacheUse(); return float64(b) }),
	)
	if s.fedClient != nil {
		reg.MustRegister(s.fedClient.Collectors()...)
	}
	for _, as := range s.appsvc.Registry().All() {
		st, labels := s.appsvc.StatsOf(as.ID), prometheus.Labels{"appservice": as.ID}
		counter := func(name, help string, v func() int64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(v()) })
		}
		id := as.ID
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_appservice_queue_length", Help: "Items queued for an application service (events, ephemeral events, to-device messages).", ConstLabels: labels},
				func() float64 {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					n, err := s.appsvc.QueueLength(ctx, id)
					if err != nil {
						return -1
					}
					return float64(n)
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "porthole_appservice_last_success_timestamp_seconds", Help: "When an application service last took a transaction from this node (0: not since start).", ConstLabels: labels},
				func() float64 { return float64(st.LastSuccess.Load()) / 1000 }),
			counter("porthole_appservice_transactions_total", "Transactions an application service took.", st.Transactions.Load),
			counter("porthole_appservice_events_total", "Room events pushed to an application service.", st.Events.Load),
			counter("porthole_appservice_ephemeral_total", "Ephemeral events and to-device messages pushed to an application service.", st.Ephemeral.Load),
			counter("porthole_appservice_failures_total", "Transactions to an application service that failed (to be retried).", st.Failures.Load),
		)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.api.Register(mux)
	if s.pages != nil {
		s.pages.Register(mux)
	}
	observe := func(route string, status int, d time.Duration) {
		requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		durations.WithLabelValues(route).Observe(d.Seconds())
	}
	clientAPI = httpx.Middleware(s.log, client.RoutePattern(mux), observe, client.RejectUncleanPaths(mux))
	if s.fedAPI != nil {
		fmux := http.NewServeMux()
		s.fedAPI.Register(fmux)
		federationAPI = httpx.Middleware(s.log, client.RoutePattern(fmux), observe, client.RejectUncleanPaths(fmux))
	}
	return clientAPI, federationAPI
}

// Handler is the whole HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// FederationHandler is the Server-Server API (nil when federation is off).
func (s *Server) FederationHandler() http.Handler { return s.fedHandler }

// FederationClient sends requests to other servers (nil when federation is off).
func (s *Server) FederationClient() *federation.Client { return s.fedClient }

// KeyRing holds this server's and other servers' signing keys (nil when federation is off).
func (s *Server) KeyRing() *federation.KeyRing { return s.fedKeys }

// API exposes the client API (tests walk its routes).
func (s *Server) API() *client.API { return s.api }

// Store exposes the database (tests read what clients are not shown, such as prev_events).
func (s *Server) Store() storage.Store { return s.store }

// Accounts exposes the account service (tests flush connections and check OpenID tokens).
func (s *Server) Accounts() *auth.Service { return s.accounts }

// Rooms exposes the rooms service (tests persist remote events through it).
func (s *Server) Rooms() *rooms.Service { return s.rooms }

// Config is the configuration the server runs with.
func (s *Server) Config() config.Config { return s.cfg }

// Media exposes the content repository (tests move its clock).
func (s *Server) Media() *media.Service { return s.media }

// Hub exposes the live hub (tests evict rooms to race loads with writes).
func (s *Server) Hub() *live.Hub { return s.hub }

// Syncer exposes the read side (tests install its read hook).
func (s *Server) Syncer() *syncer.Syncer { return s.syncer }

// Notifier exposes the notifier (tests read its gauges).
func (s *Server) Notifier() *stream.Notifier { return s.notifier }

// Serve answers the client API on ln until ctx ends, then shuts down gracefully:
// long-polls are answered at once, in-flight requests get up to 10 seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Pprof != "" {
		go s.servePprof(ctx)
	}
	return s.serve(ctx, ln, s.handler, nil, "listening")
}

// ServeFederation answers the federation API on ln until ctx ends: over TLS with the
// configured certificate, or plain HTTP behind a proxy that terminates TLS.
func (s *Server) ServeFederation(ctx context.Context, ln net.Listener) error {
	if s.fedHandler == nil {
		return errors.New("federation is not configured")
	}
	var tlsConf *tls.Config
	if f := s.cfg.Federation; f.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
		if err != nil {
			return fmt.Errorf("federation TLS: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return s.serve(ctx, ln, s.fedHandler, tlsConf, "federation listening")
}

func (s *Server) serve(ctx context.Context, ln net.Listener, h http.Handler, tlsConf *tls.Config, what string) error {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	files := raiseFileLimit()
	maxConns := s.cfg.MaxConnections
	if maxConns == 0 {
		maxConns = max(int(files)-512, 64)
	}
	ln = newLimitListener(ln, maxConns, s.log)
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	s.log.Info(what, "addr", ln.Addr().String(), "tls", tlsConf != nil, "max_connections", maxConns)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "listener", what)
	s.notifier.Shutdown()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	return nil
}

func (s *Server) servePprof(ctx context.Context) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: s.cfg.Pprof, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	s.log.Info("pprof listening", "addr", s.cfg.Pprof)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("pprof listener", "err", err)
	}
}

// startCrossNode listens for what other processes sharing the database commit (PostgreSQL
// only): new stream positions to catch up on, and cache invalidations.
func (s *Server) startCrossNode() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.store.OnSubscribeError = func(err error) { s.log.Warn("database notifications lost; reconnecting", "err", err) }
	onNotify := func(channel, payload string) {
		switch channel {
		case live.StreamChannel:
			s.hub.HandleNotification(ctx, payload)
		case auth.CacheChannel:
			parts := strings.Split(payload, "\t")
			switch {
			case len(parts) == 3 && parts[0] == "revoke":
				s.accounts.RevokeCached(parts[1], parts[2])
			case len(parts) == 3 && parts[0] == "forget":
				s.hub.Forgot(parts[1], parts[2])
			case len(parts) == 3 && parts[0] == "keys":
				s.hub.KeyCountsChanged(parts[1], parts[2])
			}
		case notify.PushersChannel:
			s.pushes.HandlePushersNotification(ctx, payload)
		}
	}
	onReconnect := func() {
		if err := s.hub.CatchUpAll(ctx); err != nil {
			s.log.Error("catching up on the stream", "err", err)
		}
	}
	// Idle rooms and users are dropped from memory, to be loaded again when needed.
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if rooms, users := s.hub.Evict(10 * time.Minute); rooms+users > 0 {
					s.log.Debug("evicted idle rooms and users from memory", "rooms", rooms, "users", users)
				}
			}
		}
	}()
	// Where clients connect from is written in batches, not on every request.
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if err := s.accounts.FlushSeen(ctx, now); err != nil && ctx.Err() == nil {
					s.log.Warn("recording client addresses", "err", err)
				}
			}
		}
	}()
	if !s.store.Shared() {
		return
	}
	// After a lost connection, pusher changes may have been missed too.
	onSubscribe := func() {
		onReconnect()
		if err := s.pushes.LoadPushers(ctx); err != nil {
			s.log.Error("reloading pushers", "err", err)
		}
	}
	go s.store.Subscribe(ctx, []string{live.StreamChannel, auth.CacheChannel, notify.PushersChannel}, onNotify, onSubscribe)
	// A safety net under LISTEN: look for missed positions now and then.
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				onReconnect()
			}
		}
	}()
}

// Close releases timers and the database.
func (s *Server) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.notifier.Shutdown()
	s.eph.Close()
	s.outbox.Close()
	if err := s.accounts.FlushSeen(context.Background(), time.Now()); err != nil {
		s.log.Warn("recording client addresses", "err", err)
	}
	s.media.Close()
	return s.store.Close()
}

// redactDSN hides a password in a database URL for logs.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return u.String()
		}
	}
	return dsn
}

// CreateUser makes an account in the configured database (porthole create-user), with
// no server running or beside a running one: both engines take concurrent writers.
func CreateUser(ctx context.Context, cfg config.Config, localpart, password string, admin bool) (userID string, created bool, err error) {
	store, err := sqlstore.Open(ctx, cfg.DatabaseURL(), sqlstore.Options{SQLiteReaders: 1, PGMaxConns: 2})
	if err != nil {
		return "", false, fmt.Errorf("opening database: %w", err)
	}
	defer store.Close()
	accounts := auth.New(store, auth.Config{ServerName: cfg.ServerName, BcryptCost: cfg.BcryptCost}, slog.New(slog.DiscardHandler))
	return accounts.CreateUser(ctx, localpart, password, admin)
}
