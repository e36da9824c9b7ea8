// Package federation serves the Matrix Server-Server API (/_matrix/federation/*,
// /_matrix/key/*, /.well-known/matrix/server) on the federation listener. routes.go lists
// every route and whether it needs an X-Matrix signature; the wrapper reads and checks the
// body, verifies the signature, rate-limits the origin, then runs the handler.
package federation

import (
	"encoding/json/jsontext"
	"log/slog"
	"net"
	"net/http"
	"strings"

	fed "porthole/internal/federation"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/ratelimit"
	"porthole/internal/rooms"
)

// Config is what the handlers need beyond the services.
type Config struct {
	ServerName string
	// WellKnownServer is served as m.server (empty: 404).
	WellKnownServer string
	// MaxBody bounds request bodies (413 M_TOO_LARGE).
	MaxBody int64
	// Limit is the per-origin (and, for unsigned key queries, per-address) request limiter;
	// nil when rate limiting is off.
	Limit *ratelimit.Limiter
	// Version is reported by /_matrix/federation/v1/version.
	Version string
}

// API holds the services behind the handlers.
type API struct {
	keys    *fed.KeyRing
	inbound *fed.Inbound
	rooms   *rooms.Service
	cfg     Config
	log     *slog.Logger
	heard   func(origin string)
}

// New returns the federation API.
func New(keys *fed.KeyRing, inbound *fed.Inbound, r *rooms.Service, cfg Config, log *slog.Logger) *API {
	return &API{keys: keys, inbound: inbound, rooms: r, cfg: cfg, log: log}
}

// SetHeard makes fn be told of the origin of every verified request (the federation
// sender retries a failing destination that shows it is back).
func (a *API) SetHeard(fn func(origin string)) { a.heard = fn }

// access says what a route needs.
type access int

const (
	// public routes need no signature: keys, version, discovery.
	public access = iota
	// limited routes need no signature but make this server fetch from others (notary
	// queries), so each address is rate-limited.
	limited
	// signed routes need a valid X-Matrix signature; each origin is rate-limited.
	signed
)

// Request is what the wrapper established about a request.
type Request struct {
	// Origin is the verified sending server ("" on unsigned routes).
	Origin string
	// Body is the request body, a JSON object (nil for GET).
	Body []byte
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, req *Request) error

type route struct {
	method string
	path   string
	access access
	h      handlerFunc
}

// routes is the whole Server-Server API that Porthole serves.
func (a *API) routes() []route {
	return []route{
		{method: "GET", path: "/.well-known/matrix/server", access: public, h: a.wellKnown},
		{method: "GET", path: "/_matrix/federation/v1/version", access: public, h: a.version},

		{method: "GET", path: "/_matrix/key/v2/server", access: public, h: a.serverKeys},
		// The key ID in the path is deprecated (and ignored) but still asked for.
		{method: "GET", path: "/_matrix/key/v2/server/{keyId}", access: public, h: a.serverKeys},
		{method: "GET", path: "/_matrix/key/v2/query/{serverName}", access: limited, h: a.queryKeysGET},
		{method: "GET", path: "/_matrix/key/v2/query/{serverName}/{keyId}", access: limited, h: a.queryKeysGET},
		{method: "POST", path: "/_matrix/key/v2/query", access: limited, h: a.queryKeysPOST},

		{method: "GET", path: "/_matrix/federation/v1/query/profile", access: signed, h: a.queryProfile},

		{method: "PUT", path: "/_matrix/federation/v1/send/{txnId}", access: signed, h: a.send},
		{method: "GET", path: "/_matrix/federation/v1/event/{eventId}", access: signed, h: a.getEvent},
		{method: "GET", path: "/_matrix/federation/v1/state_ids/{roomId}", access: signed, h: a.stateIDs},
		{method: "GET", path: "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", access: signed, h: a.eventAuth},
		{method: "GET", path: "/_matrix/federation/v1/state/{roomId}", access: signed, h: a.state},
		{method: "POST", path: "/_matrix/federation/v1/get_missing_events/{roomId}", access: signed, h: a.missingEvents},
		{method: "GET", path: "/_matrix/federation/v1/backfill/{roomId}", access: signed, h: a.backfill},
	}
}

// Route describes a registered route, for tests that walk the table.
type Route struct {
	Method, Pattern string
	Signed          bool
}

// Routes lists every registered route.
func (a *API) Routes() []Route {
	var out []Route
	for _, rt := range a.routes() {
		out = append(out, Route{Method: rt.method, Pattern: rt.path, Signed: rt.access == signed})
	}
	return out
}

// Register adds every route to mux, and the fallback that answers unknown paths with 404
// M_UNRECOGNIZED and known paths with a wrong method with 405.
func (a *API) Register(mux *http.ServeMux) {
	for _, rt := range a.routes() {
		mux.Handle(rt.method+" "+rt.path, a.wrap(rt))
	}
	mux.Handle("/", unrecognized(mux))
}

func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.serve(rt, w, r); err != nil {
			status := httpx.WriteError(w, r, err)
			if e, ok := mxerr.As(err); ok {
				httpx.AddLogAttr(r.Context(), slog.String("errcode", e.Code))
				if e.Err != nil && status < 500 {
					// Failures say why (an unverifiable signature, a key not fetched).
					httpx.AddLogAttr(r.Context(), slog.String("reason", e.Err.Error()))
				}
			}
			if status >= 500 && status != 499 {
				httpx.AddLogAttr(r.Context(), slog.String("err", err.Error()))
			}
		}
	})
}

func (a *API) serve(rt route, w http.ResponseWriter, r *http.Request) error {
	req := &Request{}
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		body, err := httpx.ReadBody(r, a.cfg.MaxBody)
		if err != nil {
			return err
		}
		// Checked before the signature, as Synapse does: the signature covers the JSON.
		var obj jsontext.Value
		if err := httpx.DecodeObject(body, &obj); err != nil {
			return err
		}
		req.Body = body
	}
	switch rt.access {
	case signed:
		origin, err := a.keys.VerifyRequest(r.Context(), r, req.Body)
		if err != nil {
			return err
		}
		req.Origin = origin
		httpx.AddLogAttr(r.Context(), slog.String("origin", origin))
		if a.heard != nil {
			a.heard(origin)
		}
		if err := a.limit("origin:" + origin); err != nil {
			return err
		}
	case limited:
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if err := a.limit("addr:" + host); err != nil {
			return err
		}
	}
	return rt.h(w, r, req)
}

// limit takes a token for key, or answers 429 M_LIMIT_EXCEEDED.
func (a *API) limit(key string) error {
	if ok, wait := a.cfg.Limit.Allow(key); !ok {
		return mxerr.LimitExceeded(wait.Milliseconds() + 1)
	}
	return nil
}

// unrecognized answers what no route matched: 405 if the path exists for another method,
// else 404, both M_UNRECOGNIZED.
func unrecognized(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				httpx.WriteError(w, r, mxerr.MethodNotAllowed())
				return
			}
		}
		msg := "Unrecognized request"
		if !strings.HasPrefix(r.URL.Path, "/_matrix/") {
			msg = "Not found"
		}
		httpx.WriteError(w, r, mxerr.Unrecognized(msg))
	})
}
