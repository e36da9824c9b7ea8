// Package client serves the Matrix Client-Server API. routes.go lists every route, who may
// call it, and under which prefixes; handlers parse the request, call a service, and write
// the answer.
package client

import (
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"porthole/internal/appservice"
	"porthole/internal/auth"
	"porthole/internal/e2ee"
	"porthole/internal/ephemeral"
	"porthole/internal/httpx"
	"porthole/internal/media"
	"porthole/internal/mxerr"
	"porthole/internal/notify"
	"porthole/internal/ratelimit"
	"porthole/internal/reports"
	"porthole/internal/rooms"
	"porthole/internal/syncer"
)

// Config is what the handlers need beyond the services.
type Config struct {
	ServerName     string
	BaseURL        string
	MaxBody        int64
	DefaultTimeout time.Duration
	// Limits is nil when rate limiting is off.
	Limits *Limits
	// Proxies are trusted for X-Forwarded-For.
	Proxies Proxies
	// Turn is what GET /voip/turnServer hands out.
	Turn Turn
}

// Limits are the request rate limiters and the long-poll caps.
type Limits struct {
	IP, User, Register *ratelimit.Limiter
	Polls              *PollLimiter
}

// API holds the services behind the handlers.
type API struct {
	auth    *auth.Service
	rooms   *rooms.Service
	eph     *ephemeral.Service
	sync    *syncer.Syncer
	e2ee    *e2ee.Service
	cfg     Config
	log     *slog.Logger
	filters filterCache
	notify  *notify.Service     // see SetNotify
	reports *reports.Service    // see SetReports
	media   *media.Service      // see SetMedia
	appsvc  *appservice.Service // see SetAppServices
}

// New returns the client API.
func New(a *auth.Service, r *rooms.Service, e *ephemeral.Service, s *syncer.Syncer, keys *e2ee.Service, cfg Config, log *slog.Logger) *API {
	return &API{auth: a, rooms: r, eph: e, sync: s, e2ee: keys, cfg: cfg, log: log}
}

// access says who may call a route.
type access int

const (
	public        access = iota // no token needed (one is ignored)
	members                     // real users only: guests get 403 M_GUEST_ACCESS_FORBIDDEN
	guestsOK                    // real users and guests (the spec's guest list, plus Synapse's)
	tokenOptional               // anyone; a token, if given, must be valid and names the caller
)

type handlerFunc func(w http.ResponseWriter, r *http.Request, s *auth.Session) error

type route struct {
	method string
	path   string
	access access
	h      handlerFunc
	// v1 also serves the route under /_matrix/client/api/v1 (old /events clients).
	v1 bool
	// unstable also serves the route under /_matrix/client/unstable, where clients and
	// sytest written before Matrix 1.1 call the cross-signing endpoints (as Synapse does).
	unstable bool
	// clientV1 serves the route only under /_matrix/client/v1, where the spec puts the
	// endpoints added after v3 (relations, threads).
	clientV1 bool
	// media serves the route only under /_matrix/media/<version> for each version given:
	// the content repository's own prefix, which its deprecated endpoints (and uploads)
	// still use.
	media []string
}

// legacyMedia are the versions of /_matrix/media that Synapse serves the deprecated media
// endpoints under (r0 and v1 are not in the spec but still called).
var legacyMedia = []string{"v3", "r0", "v1"}

// clientPrefixes serve every versioned route: v3, and r0 for older clients and sytest.
var clientPrefixes = []string{"/_matrix/client/v3", "/_matrix/client/r0"}

// routes is the whole Client-Server API that Porthole serves.
func (a *API) routes() []route {
	return []route{
		{method: "GET", path: "/capabilities", access: guestsOK, h: a.capabilities},

		{method: "POST", path: "/register", access: public, h: a.register},
		{method: "GET", path: "/register/available", access: public, h: a.registerAvailable},
		{method: "GET", path: "/login", access: public, h: a.loginFlows},
		{method: "POST", path: "/login", access: public, h: a.login},
		{method: "POST", path: "/logout", access: members, h: a.logout},
		{method: "POST", path: "/logout/all", access: members, h: a.logoutAll},
		{method: "GET", path: "/account/whoami", access: guestsOK, h: a.whoami},
		{method: "POST", path: "/account/password", access: members, h: a.changePassword},
		{method: "POST", path: "/account/deactivate", access: members, h: a.deactivate},
		{method: "GET", path: "/devices", access: guestsOK, h: a.devices},
		{method: "GET", path: "/devices/{deviceId}", access: guestsOK, h: a.device},
		{method: "PUT", path: "/devices/{deviceId}", access: guestsOK, h: a.updateDevice},
		{method: "DELETE", path: "/devices/{deviceId}", access: members, h: a.deleteDevice},
		{method: "POST", path: "/delete_devices", access: members, h: a.deleteDevices},

		{method: "POST", path: "/createRoom", access: members, h: a.createRoom},
		{method: "POST", path: "/join/{roomIdOrAlias}", access: guestsOK, h: a.joinByIDOrAlias},
		{method: "POST", path: "/rooms/{roomId}/join", access: guestsOK, h: a.joinRoom},
		{method: "POST", path: "/rooms/{roomId}/leave", access: guestsOK, h: a.membership("leave")},
		{method: "POST", path: "/rooms/{roomId}/invite", access: members, h: a.membership("invite")},
		{method: "POST", path: "/rooms/{roomId}/kick", access: members, h: a.membership("kick")},
		{method: "POST", path: "/rooms/{roomId}/ban", access: members, h: a.membership("ban")},
		{method: "POST", path: "/rooms/{roomId}/unban", access: members, h: a.membership("unban")},
		{method: "POST", path: "/rooms/{roomId}/forget", access: members, h: a.forget},
		{method: "POST", path: "/rooms/{roomId}/upgrade", access: members, h: a.upgradeRoom},
		{method: "GET", path: "/joined_rooms", access: guestsOK, h: a.joinedRooms},

		{method: "PUT", path: "/directory/room/{roomAlias}", access: members, h: a.putAlias},
		{method: "GET", path: "/directory/room/{roomAlias}", access: public, h: a.getAlias},
		{method: "DELETE", path: "/directory/room/{roomAlias}", access: members, h: a.deleteAlias},
		{method: "GET", path: "/rooms/{roomId}/aliases", access: members, h: a.roomAliases},
		{method: "GET", path: "/directory/list/room/{roomId}", access: public, h: a.getDirectoryVisibility},
		{method: "PUT", path: "/directory/list/room/{roomId}", access: members, h: a.setDirectoryVisibility},
		// Application services' own directories of their networks, and their ping.
		{method: "PUT", path: "/directory/list/appservice/{networkId}/{roomId}", access: members, h: a.setAppServiceListed(true)},
		{method: "DELETE", path: "/directory/list/appservice/{networkId}/{roomId}", access: members, h: a.setAppServiceListed(false)},
		{method: "POST", path: "/appservice/{appserviceId}/ping", access: members, h: a.pingAppService, clientV1: true},
		{method: "GET", path: "/publicRooms", access: public, h: a.publicRooms},
		{method: "POST", path: "/publicRooms", access: guestsOK, h: a.publicRooms},

		{method: "PUT", path: "/rooms/{roomId}/send/{eventType}/{txnId}", access: guestsOK, h: a.send},
		// The legacy form without a transaction ID, which sytest still uses; not idempotent.
		{method: "POST", path: "/rooms/{roomId}/send/{eventType}", access: guestsOK, h: a.send},
		{method: "PUT", path: "/rooms/{roomId}/state/{eventType}", access: guestsOK, h: a.putState},
		{method: "PUT", path: "/rooms/{roomId}/state/{eventType}/{stateKey...}", access: guestsOK, h: a.putState},
		{method: "GET", path: "/rooms/{roomId}/state", access: guestsOK, h: a.getState},
		{method: "GET", path: "/rooms/{roomId}/state/{eventType}", access: guestsOK, h: a.getStateEvent},
		{method: "GET", path: "/rooms/{roomId}/state/{eventType}/{stateKey...}", access: guestsOK, h: a.getStateEvent},
		{method: "PUT", path: "/rooms/{roomId}/redact/{eventId}/{txnId}", access: members, h: a.redact},
		{method: "GET", path: "/rooms/{roomId}/event/{eventId}", access: guestsOK, h: a.getEvent},
		{method: "GET", path: "/rooms/{roomId}/members", access: guestsOK, h: a.members},
		{method: "GET", path: "/rooms/{roomId}/joined_members", access: members, h: a.joinedMembers},
		{method: "GET", path: "/rooms/{roomId}/messages", access: guestsOK, h: a.messages},
		{method: "GET", path: "/rooms/{roomId}/context/{eventId}", access: guestsOK, h: a.context},
		{method: "GET", path: "/rooms/{roomId}/relations/{eventId}", access: guestsOK, h: a.relations, clientV1: true},
		{method: "GET", path: "/rooms/{roomId}/relations/{eventId}/{relType}", access: guestsOK, h: a.relations, clientV1: true},
		{method: "GET", path: "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", access: guestsOK, h: a.relations, clientV1: true},
		{method: "GET", path: "/rooms/{roomId}/threads", access: members, h: a.threads, clientV1: true},
		{method: "GET", path: "/rooms/{roomId}/timestamp_to_event", access: members, h: a.timestampToEvent, clientV1: true},
		{method: "GET", path: "/rooms/{roomId}/hierarchy", access: guestsOK, h: a.hierarchy, clientV1: true},
		{method: "GET", path: "/room_summary/{roomIdOrAlias}", access: tokenOptional, h: a.roomSummary, clientV1: true},

		{method: "GET", path: "/sync", access: guestsOK, h: a.syncHandler},
		{method: "POST", path: "/user/{userId}/filter", access: members, h: a.postFilter},
		{method: "GET", path: "/user/{userId}/filter/{filterId}", access: members, h: a.getFilter},
		{method: "GET", path: "/events", access: guestsOK, h: a.events, v1: true},
		{method: "GET", path: "/rooms/{roomId}/initialSync", access: guestsOK, h: a.roomInitialSync, v1: true},
		{method: "GET", path: "/initialSync", access: members, h: a.initialSync, v1: true},

		{method: "PUT", path: "/rooms/{roomId}/typing/{userId}", access: members, h: a.typing},
		{method: "POST", path: "/rooms/{roomId}/receipt/{receiptType}/{eventId}", access: members, h: a.receipt},
		{method: "POST", path: "/rooms/{roomId}/read_markers", access: members, h: a.readMarkers},
		{method: "GET", path: "/presence/{userId}/status", access: members, h: a.getPresence},
		{method: "PUT", path: "/presence/{userId}/status", access: members, h: a.putPresence},

		{method: "POST", path: "/user_directory/search", access: members, h: a.searchUserDirectory},
		{method: "POST", path: "/search", access: members, h: a.search},
		{method: "GET", path: "/profile/{userId}", access: public, h: a.getProfile},
		{method: "GET", path: "/profile/{userId}/{field}", access: public, h: a.getProfileField},
		{method: "PUT", path: "/profile/{userId}/displayname", access: guestsOK, h: a.putProfileField("displayname")},
		{method: "DELETE", path: "/profile/{userId}/displayname", access: guestsOK, h: a.deleteProfileField("displayname")},
		{method: "PUT", path: "/profile/{userId}/avatar_url", access: members, h: a.putProfileField("avatar_url")},
		{method: "DELETE", path: "/profile/{userId}/avatar_url", access: members, h: a.deleteProfileField("avatar_url")},

		{method: "GET", path: "/user/{userId}/account_data/{type}", access: members, h: a.getAccountData},
		{method: "PUT", path: "/user/{userId}/account_data/{type}", access: members, h: a.putAccountData},
		{method: "GET", path: "/user/{userId}/rooms/{roomId}/account_data/{type}", access: members, h: a.getAccountData},
		{method: "PUT", path: "/user/{userId}/rooms/{roomId}/account_data/{type}", access: members, h: a.putAccountData},
		{method: "GET", path: "/user/{userId}/rooms/{roomId}/tags", access: members, h: a.getTags},
		{method: "PUT", path: "/user/{userId}/rooms/{roomId}/tags/{tag}", access: members, h: a.putTag},
		{method: "DELETE", path: "/user/{userId}/rooms/{roomId}/tags/{tag}", access: members, h: a.deleteTag},

		// One pattern per method: the handlers parse scope, kind, rule ID and attribute, so
		// that every malformed path gets the spec's 400 rather than a 404.
		{method: "GET", path: "/pushrules/{path...}", access: members, h: a.getPushRules},
		// Without the slash it is not an endpoint (as in Synapse); stated here because the
		// mux would otherwise redirect it to the pattern above.
		{method: "GET", path: "/pushrules", access: public, h: notAnEndpoint},
		{method: "PUT", path: "/pushrules/{path...}", access: members, h: a.putPushRule},
		{method: "DELETE", path: "/pushrules/{path...}", access: members, h: a.deletePushRule},

		// End-to-end encryption. Keys and to-device messages are on the spec's guest list
		// (and /keys/changes, which Synapse opens to guests too); cross-signing and key
		// backups need a real account.
		{method: "POST", path: "/keys/upload", access: guestsOK, h: a.uploadKeys},
		{method: "POST", path: "/keys/query", access: guestsOK, h: a.queryKeys},
		{method: "POST", path: "/keys/claim", access: guestsOK, h: a.claimKeys},
		{method: "GET", path: "/keys/changes", access: guestsOK, h: a.keyChanges},
		{method: "POST", path: "/keys/device_signing/upload", access: members, h: a.uploadCrossSigning, unstable: true},
		{method: "POST", path: "/keys/signatures/upload", access: members, h: a.uploadSignatures, unstable: true},
		{method: "PUT", path: "/sendToDevice/{eventType}/{txnId}", access: guestsOK, h: a.sendToDevice},
		{method: "POST", path: "/room_keys/version", access: members, h: a.createBackup},
		{method: "GET", path: "/room_keys/version", access: members, h: a.getBackup},
		{method: "GET", path: "/room_keys/version/{version}", access: members, h: a.getBackup},
		{method: "PUT", path: "/room_keys/version/{version}", access: members, h: a.updateBackup},
		{method: "DELETE", path: "/room_keys/version/{version}", access: members, h: a.deleteBackup},
		{method: "GET", path: "/room_keys/keys", access: members, h: a.getRoomKeys},
		{method: "PUT", path: "/room_keys/keys", access: members, h: a.putRoomKeys},
		{method: "DELETE", path: "/room_keys/keys", access: members, h: a.deleteRoomKeys},
		{method: "GET", path: "/room_keys/keys/{roomId}", access: members, h: a.getRoomKeys},
		{method: "PUT", path: "/room_keys/keys/{roomId}", access: members, h: a.putRoomKeys},
		{method: "DELETE", path: "/room_keys/keys/{roomId}", access: members, h: a.deleteRoomKeys},
		{method: "GET", path: "/room_keys/keys/{roomId}/{sessionId}", access: members, h: a.getRoomKeys},
		{method: "PUT", path: "/room_keys/keys/{roomId}/{sessionId}", access: members, h: a.putRoomKeys},
		{method: "DELETE", path: "/room_keys/keys/{roomId}/{sessionId}", access: members, h: a.deleteRoomKeys},
		// Third-party networks (no bridges yet) and identifiers (not verified here).
		{method: "GET", path: "/thirdparty/protocols", access: guestsOK, h: a.thirdPartyProtocols},
		{method: "GET", path: "/thirdparty/protocol/{protocol}", access: guestsOK, h: a.thirdPartyProtocol},
		{method: "GET", path: "/thirdparty/location", access: guestsOK, h: a.thirdPartyLookup(appservice.LookupLocation)},
		{method: "GET", path: "/thirdparty/location/{protocol}", access: guestsOK, h: a.thirdPartyLookup(appservice.LookupLocation)},
		{method: "GET", path: "/thirdparty/user", access: guestsOK, h: a.thirdPartyLookup(appservice.LookupUser)},
		{method: "GET", path: "/thirdparty/user/{protocol}", access: guestsOK, h: a.thirdPartyLookup(appservice.LookupUser)},
		{method: "GET", path: "/account/3pid", access: members, h: a.getThreepids},
		{method: "POST", path: "/account/3pid", access: members, h: a.threepidChange},
		{method: "POST", path: "/account/3pid/add", access: members, h: a.threepidChange},
		{method: "POST", path: "/account/3pid/delete", access: members, h: a.threepidChange},
		{method: "POST", path: "/account/3pid/bind", access: members, h: a.threepidBind},
		{method: "POST", path: "/account/3pid/unbind", access: members, h: a.threepidUnbind},
		{method: "POST", path: "/account/3pid/email/requestToken", access: public, h: a.threepidChange},
		{method: "POST", path: "/account/3pid/msisdn/requestToken", access: public, h: a.threepidMsisdnToken},

		// Guests may call (turn_allow_guests decides whether they get credentials).
		{method: "GET", path: "/voip/turnServer", access: guestsOK, h: a.turnServer, v1: true},
		{method: "POST", path: "/user/{userId}/openid/request_token", access: members, h: a.openIDToken},
		{method: "GET", path: "/admin/whois/{userId}", access: members, h: a.whois, v1: true},
		{method: "POST", path: "/rooms/{roomId}/report/{eventId}", access: members, h: a.reportEvent},
		{method: "POST", path: "/rooms/{roomId}/report", access: members, h: a.reportRoom},
		{method: "POST", path: "/users/{userId}/report", access: members, h: a.reportUser},

		{method: "GET", path: "/notifications", access: members, h: a.getNotifications},
		{method: "GET", path: "/pushers", access: members, h: a.getPushers},
		{method: "POST", path: "/pushers/set", access: members, h: a.setPusher},

		// The content repository. Guests may download (the spec's guest list); uploads,
		// the configuration and URL previews need an account (as Synapse). The deprecated
		// unauthenticated downloads serve only media from before the freeze
		// (media_legacy_unauthenticated).
		{method: "GET", path: "/media/config", access: members, h: a.mediaConfig, clientV1: true},
		{method: "GET", path: "/media/download/{serverName}/{mediaId}", access: guestsOK, h: a.download(false), clientV1: true},
		{method: "GET", path: "/media/download/{serverName}/{mediaId}/{fileName}", access: guestsOK, h: a.download(false), clientV1: true},
		{method: "GET", path: "/media/thumbnail/{serverName}/{mediaId}", access: guestsOK, h: a.thumbnail(false), clientV1: true},
		{method: "GET", path: "/media/preview_url", access: members, h: a.previewURL, clientV1: true},
		{method: "POST", path: "/create", access: members, h: a.createMedia, media: []string{"v1"}},
		{method: "POST", path: "/upload", access: members, h: a.upload, media: legacyMedia},
		{method: "PUT", path: "/upload/{serverName}/{mediaId}", access: members, h: a.upload, media: []string{"v3"}},
		{method: "GET", path: "/config", access: members, h: a.mediaConfig, media: legacyMedia},
		{method: "GET", path: "/download/{serverName}/{mediaId}", access: public, h: a.download(true), media: legacyMedia},
		{method: "GET", path: "/download/{serverName}/{mediaId}/{fileName}", access: public, h: a.download(true), media: legacyMedia},
		{method: "GET", path: "/thumbnail/{serverName}/{mediaId}", access: public, h: a.thumbnail(true), media: legacyMedia},
		{method: "GET", path: "/preview_url", access: members, h: a.previewURL, media: legacyMedia},
	}
}

// Route describes a registered route, for tests that walk the table.
type Route struct {
	Method, Pattern string
	GuestsAllowed   bool
	Public          bool
}

// Routes lists every registered method and full path pattern.
func (a *API) Routes() []Route {
	var out []Route
	for _, rt := range a.routes() {
		for _, p := range prefixesOf(rt) {
			out = append(out, Route{Method: rt.method, Pattern: p + rt.path, GuestsAllowed: rt.access != members, Public: rt.access == public || rt.access == tokenOptional})
		}
	}
	return out
}

func prefixesOf(rt route) []string {
	switch {
	case len(rt.media) > 0:
		var out []string
		for _, v := range rt.media {
			out = append(out, "/_matrix/media/"+v)
		}
		return out
	case rt.clientV1:
		return []string{"/_matrix/client/v1"}
	case rt.v1:
		return append(append([]string{}, clientPrefixes...), "/_matrix/client/api/v1")
	case rt.unstable:
		return append(append([]string{}, clientPrefixes...), "/_matrix/client/unstable")
	}
	return clientPrefixes
}

// Register adds every route to mux, plus the unversioned endpoints and the fallback that
// answers unknown paths with 404 M_UNRECOGNIZED and wrong methods with 405.
func (a *API) Register(mux *http.ServeMux) {
	for _, rt := range a.routes() {
		h := a.wrap(rt)
		for _, p := range prefixesOf(rt) {
			mux.Handle(rt.method+" "+p+rt.path, h)
		}
	}
	mux.Handle("GET /_matrix/client/versions", a.wrap(route{access: public, h: a.versions}))
	mux.Handle("GET /.well-known/matrix/client", a.wrap(route{access: public, h: a.wellKnown}))
	mux.Handle("/", unrecognized(mux))
}

// wrap authenticates and applies the route's access rule, then runs the handler.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := a.serve(rt, w, r)
		if err != nil {
			status := httpx.WriteError(w, r, err)
			if e, ok := mxerr.As(err); ok {
				httpx.AddLogAttr(r.Context(), slog.String("errcode", e.Code))
			}
			if status >= 500 && status != 499 {
				httpx.AddLogAttr(r.Context(), slog.String("err", err.Error()))
			}
		}
	})
}

func (a *API) serve(rt route, w http.ResponseWriter, r *http.Request) error {
	// An application service whose registration says rate_limited: false is never limited.
	unlimited := false
	if as := a.auth.AppServiceOf(r); as != nil && !as.RateLimited {
		unlimited = true
	}
	if !unlimited {
		if err := a.limit(a.limitsIP(), a.limitKey(r)); err != nil {
			return err
		}
	}
	var sess *auth.Session
	if _, hasToken := auth.TokenFromRequest(r); rt.access != public && (rt.access != tokenOptional || hasToken || r.Header.Get("Authorization") != "") {
		s, err := a.auth.Authenticate(r.Context(), r)
		if err != nil {
			return err
		}
		if s.IsGuest && rt.access == members {
			return mxerr.GuestAccessForbidden()
		}
		if a.cfg.Limits != nil && !unlimited {
			if err := a.limit(a.cfg.Limits.User, s.UserID); err != nil {
				return err
			}
		}
		httpx.AddLogAttr(r.Context(), slog.String("user", s.UserID))
		a.auth.Seen(s, a.clientIP(r), r.UserAgent(), time.Now())
		if s.AppService != nil {
			httpx.AddLogAttr(r.Context(), slog.String("appservice", s.AppService.ID))
		}
		sess = s
	}
	return rt.h(w, r, sess)
}

func (a *API) limitsIP() *ratelimit.Limiter {
	if a.cfg.Limits == nil {
		return nil
	}
	return a.cfg.Limits.IP
}

// limit takes a token from l for key, or answers 429 M_LIMIT_EXCEEDED.
func (a *API) limit(l *ratelimit.Limiter, key string) error {
	if ok, wait := l.Allow(key); !ok {
		return mxerr.LimitExceeded(wait.Milliseconds() + 1)
	}
	return nil
}

// limitRegistration applies the per-IP limit on registrations and logins.
func (a *API) limitRegistration(r *http.Request) error {
	if a.cfg.Limits == nil {
		return nil
	}
	return a.limit(a.cfg.Limits.Register, a.limitKey(r))
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

// RejectUncleanPaths answers a path with "." or ".." segments or an empty segment ("//")
// with 404 M_UNRECOGNIZED, as Synapse does, where the mux would answer 307 with an HTML body
// redirecting to the cleaned path (which could name another endpoint than the one asked
// for). Escaped slashes are data inside one segment and do not count.
func RejectUncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && !isCleanPath(p) {
			httpx.WriteError(w, r, mxerr.Unrecognized("Unrecognized request"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// RoutePattern names the route a request matched, for logs and metrics.
func RoutePattern(mux *http.ServeMux) func(*http.Request) string {
	return func(r *http.Request) string {
		if r.Pattern != "" {
			return r.Pattern
		}
		return "unmatched"
	}
}
