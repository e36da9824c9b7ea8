// Package config holds Porthole's settings: defaults, the YAML file, PORTHOLE_* environment
// overrides, and validation that reports every problem at once.
package config

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"maunium.net/go/mautrix/federation"
	"porthole/internal/roomversion"
)

// Config is the whole server configuration. The yaml tags are the file's keys; the env
// override of a key is PORTHOLE_ followed by the key in upper case (PORTHOLE_SERVER_NAME).
type Config struct {
	ServerName string `yaml:"server_name"`
	Listen     string `yaml:"listen"`
	DataDir    string `yaml:"data_dir"`
	// Database is empty for SQLite in DataDir, a path or sqlite:// URL for another SQLite file,
	// or postgres://... for PostgreSQL.
	Database       string `yaml:"database"`
	PublicBaseURL  string `yaml:"public_baseurl"`
	Registration   string `yaml:"registration"` // open | closed
	Guests         string `yaml:"guests"`       // on | off
	DefaultRoomVer string `yaml:"default_room_version"`
	LogLevel       string `yaml:"log_level"`  // debug | info | warn | error
	LogFormat      string `yaml:"log_format"` // text | json

	MaxRequestBody int64 `yaml:"max_request_body"` // bytes; larger bodies get 413 M_TOO_LARGE

	// Long-poll limits for /events and /sync.
	LongPollDefault time.Duration `yaml:"long_poll_default"`
	LongPollMax     time.Duration `yaml:"long_poll_max"`
	LongPollMin     time.Duration `yaml:"long_poll_min"`

	// PeekWindow is how many recent stream items each active room keeps in memory,
	// already encoded, to serve long-polls without touching the database.
	PeekWindow int `yaml:"peek_window"`

	// Pprof, when set, is a loopback host:port serving /debug/pprof on its own listener.
	Pprof string `yaml:"pprof"`

	// SQLite tuning.
	SQLiteReaders int `yaml:"sqlite_readers"`

	// PostgreSQL connection pool.
	PGMaxConns        int           `yaml:"postgres_max_connections"`
	PGConnMaxLifetime time.Duration `yaml:"postgres_conn_max_lifetime"`

	// BcryptCost is the bcrypt work factor for passwords (4-31).
	BcryptCost int `yaml:"bcrypt_cost"`

	// Rate limiting (token buckets); RateLimit "off" disables all of them.
	RateLimit         string  `yaml:"rate_limit"` // on | off
	IPRequestsPerSec  float64 `yaml:"rate_limit_ip_per_second"`
	IPRequestsBurst   int     `yaml:"rate_limit_ip_burst"`
	UserRequestsPerS  float64 `yaml:"rate_limit_user_per_second"`
	UserRequestsBurst int     `yaml:"rate_limit_user_burst"`
	RegisterPerSec    float64 `yaml:"rate_limit_register_per_second"`
	RegisterBurst     int     `yaml:"rate_limit_register_burst"`
	// Concurrent long-polls (/events, /sync with a timeout) per user and per IP.
	MaxPollsPerUser int `yaml:"max_longpolls_per_user"`
	MaxPollsPerIP   int `yaml:"max_longpolls_per_ip"`

	// MaxConnections caps open client connections; 0 means the open-files limit minus 512.
	MaxConnections int `yaml:"max_connections"`

	// ToDeviceInboxLimit bounds each device's undelivered to-device messages.
	ToDeviceInboxLimit int `yaml:"to_device_inbox_limit"`

	// Push gateways: pushers name their gateway's URL, so outgoing pushes are refused to
	// loopback, private and link-local addresses (checked on the address dialled) unless
	// PushAllowPrivate is "on"; PushTrust is a PEM bundle trusted for gateway TLS besides
	// the system's roots.
	PushAllowPrivate string `yaml:"push_allow_private"` // on | off
	PushTrust        string `yaml:"push_trust"`

	// TrustedProxies are addresses or CIDR ranges (a load balancer) whose X-Forwarded-For
	// header is believed, so per-IP limits see clients rather than the proxy.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// TURN servers handed to VoIP clients (GET /voip/turnServer), with Synapse's settings:
	// credentials are made per user from TurnSharedSecret (the TURN REST API scheme), or
	// are the fixed TurnUsername and TurnPassword; each is valid for TurnUserLifetime.
	TurnURIs         []string      `yaml:"turn_uris"`
	TurnSharedSecret string        `yaml:"turn_shared_secret"`
	TurnUsername     string        `yaml:"turn_username"`
	TurnPassword     string        `yaml:"turn_password"`
	TurnUserLifetime time.Duration `yaml:"turn_user_lifetime"`
	TurnAllowGuests  bool          `yaml:"turn_allow_guests"`

	// Web is the public window: world-readable rooms as web pages (internal/web).
	Web Web `yaml:"web"`

	// Federation is the server-server API; it is off unless Federation.Listen is set.
	Federation Federation `yaml:"federation"`

	// AppServiceConfigFiles are application service registration files (YAML, as Synapse
	// and the bridges write them), read and checked at start (internal/appservice).
	AppServiceConfigFiles []string `yaml:"app_service_config_files"`
	// AppServiceQueryTimeout bounds each call to a service a client waits for (user and
	// alias queries, third-party lookups, ping).
	AppServiceQueryTimeout time.Duration `yaml:"app_service_query_timeout"`

	// Media is the content repository (internal/media).
	Media Media `yaml:"media"`

	// UserDirectory configures POST /user_directory/search.
	UserDirectory UserDirectory `yaml:"user_directory"`
}

// Media configures the content repository: its store, limits and endpoints.
type Media struct {
	// Dir holds the content-addressed files (empty: data_dir/media).
	Dir            string        `yaml:"dir"`
	MaxUploadSize  int64         `yaml:"max_upload_size"`  // bytes; m.upload.size
	MaxImagePixels int64         `yaml:"max_image_pixels"` // larger images are not thumbnailed
	UploadQuota    int64         `yaml:"upload_quota"`     // bytes per user per period; 0: none
	QuotaPeriod    time.Duration `yaml:"upload_quota_period"`
	UploadsPerSec  float64       `yaml:"uploads_per_second"` // per user (with rate_limit on)
	UploadsBurst   int           `yaml:"uploads_burst"`
	MaxPending     int           `yaml:"max_pending_uploads"` // per user, POST /create
	PendingExpiry  time.Duration `yaml:"pending_expiry"`
	// LegacyUnauth says which media the deprecated unauthenticated endpoints
	// (/_matrix/media/v3/download and thumbnail) still serve: "none", "all", or an RFC 3339
	// time before which media must have been created (Synapse's freeze).
	LegacyUnauth string `yaml:"legacy_unauthenticated"`
	// URLPreview turns GET /media/preview_url on; it fetches the URLs users name, never from
	// loopback, private or link-local addresses.
	URLPreview string `yaml:"url_preview"` // on | off
}

// UserDirectory is Synapse's user_directory section.
type UserDirectory struct {
	// SearchAllUsers makes the search find every user, not only those who share a room
	// with the searcher or are in rooms anyone may join or read.
	SearchAllUsers bool `yaml:"search_all_users"`
}

// Web configures the server-rendered pages of world-readable rooms and their embed.
type Web struct {
	Enabled string `yaml:"enabled"` // on | off
	// Path is where the pages live: "/" (the directory at the root) or a prefix like "/web/".
	Path string `yaml:"path"`
	// GuestPosting lets visitors of an embed post as guests in rooms whose guest access is
	// can_join.
	GuestPosting string `yaml:"guest_posting"` // on | off
	// FrameAncestors is the CSP frame-ancestors source list for /embed pages.
	FrameAncestors string `yaml:"frame_ancestors"`
	// NoIndex asks search engines not to index any page.
	NoIndex string `yaml:"noindex"` // on | off
	// PagesPerSecond and Burst limit page loads per client IP (with rate_limit on).
	PagesPerSecond float64 `yaml:"pages_per_second"`
	PagesBurst     int     `yaml:"pages_burst"`
	// CommentRooms, when set, is an alias localpart prefix ("comments_"): a page or embed of an
	// unknown local alias with that prefix creates the room (world-readable, guests can
	// join) in the name of CommentRoomsOwner, a local account created at start if missing.
	CommentRooms      string `yaml:"comment_rooms"`
	CommentRoomsOwner string `yaml:"comment_rooms_owner"`
}

// Federation configures talking to other homeservers. Its env overrides are
// PORTHOLE_FEDERATION_<KEY> (PORTHOLE_FEDERATION_LISTEN).
type Federation struct {
	// Listen is the host:port of the federation listener; empty turns federation off.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files for the listener; without them it speaks plain
	// HTTP, for a reverse proxy that terminates TLS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// WellKnownServer, when set, is served as m.server at /.well-known/matrix/server
	// (delegation: other servers then reach this one there).
	WellKnownServer string `yaml:"well_known_server"`
	// Trust is a PEM bundle trusted for outgoing TLS besides the system's roots.
	Trust string `yaml:"trust"`
	// AllowPrivateAddresses lets outgoing requests go to loopback, private and link-local
	// addresses (checked on the address connected to); tests need it, the internet not.
	AllowPrivateAddresses string `yaml:"allow_private_addresses"` // on | off
	// TrustedKeyServers are notaries asked for other servers' keys when those servers
	// cannot be asked directly (as Synapse's trusted_key_servers).
	TrustedKeyServers []KeyServer `yaml:"trusted_key_servers"`
	// MaxRequestBody bounds an incoming request body (413 M_TOO_LARGE above it).
	MaxRequestBody int64 `yaml:"max_request_body"`
	// Per-origin request rate (token bucket) when rate_limit is on.
	RequestsPerSec float64 `yaml:"rate_limit_per_second"`
	RequestsBurst  int     `yaml:"rate_limit_burst"`
}

// KeyServer is a notary and the keys its answers must be signed with.
type KeyServer struct {
	ServerName string `yaml:"server_name"`
	// VerifyKeys maps key IDs (ed25519:abc) to unpadded base64 public keys.
	VerifyKeys map[string]string `yaml:"verify_keys"`
}

// Enabled reports whether the federation listener is configured.
func (f Federation) Enabled() bool { return f.Listen != "" }

// Default returns the configuration used when nothing is given.
func Default() Config {
	return Config{
		ServerName:        "localhost",
		Listen:            "127.0.0.1:8008",
		DataDir:           "./porthole-data",
		Registration:      "open",
		Guests:            "on",
		DefaultRoomVer:    "10",
		LogLevel:          "info",
		LogFormat:         "text",
		MaxRequestBody:    256 << 10,
		LongPollDefault:   30 * time.Second,
		LongPollMax:       60 * time.Second,
		LongPollMin:       500 * time.Millisecond,
		PeekWindow:        512,
		SQLiteReaders:     8,
		PGMaxConns:        20,
		PGConnMaxLifetime: 30 * time.Minute,
		BcryptCost:        12,

		RateLimit:         "on",
		IPRequestsPerSec:  200,
		IPRequestsBurst:   1000,
		UserRequestsPerS:  20,
		UserRequestsBurst: 100,
		RegisterPerSec:    1,
		RegisterBurst:     20,
		MaxPollsPerUser:   50,
		MaxPollsPerIP:     5000,

		ToDeviceInboxLimit: 10000,
		PushAllowPrivate:   "off",

		TurnUserLifetime: time.Hour,
		TurnAllowGuests:  true,
		Web:              Web{Enabled: "on", Path: "/", GuestPosting: "on", FrameAncestors: "*", NoIndex: "off", PagesPerSecond: 10, PagesBurst: 50},
		Federation: Federation{
			AllowPrivateAddresses: "off",
			MaxRequestBody:        8 << 20,
			RequestsPerSec:        50,
			RequestsBurst:         500,
		},

		AppServiceQueryTimeout: 10 * time.Second,
		Media: Media{MaxUploadSize: 50 << 20, MaxImagePixels: 32 << 20, UploadQuota: 1 << 30, QuotaPeriod: 24 * time.Hour,
			UploadsPerSec: 2, UploadsBurst: 50, MaxPending: 5, PendingExpiry: 24 * time.Hour, LegacyUnauth: "none", URLPreview: "off"},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are an error: a typo must not
// silently leave a default in place.
func Load(path string) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("reading config: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("parsing config %s: %w", path, err)
	}
	return cfg, nil
}

// ApplyEnv overrides fields from PORTHOLE_<KEY> environment variables; a key in a section
// is PORTHOLE_<SECTION>_<KEY> (web.enabled is PORTHOLE_WEB_ENABLED).
func (c *Config) ApplyEnv(getenv func(string) string) error {
	return applyEnv(reflect.ValueOf(c).Elem(), "PORTHOLE_", getenv)
}

func applyEnv(v reflect.Value, prefix string, getenv func(string) string) error {
	var errs []error
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := prefix + strings.ToUpper(strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0])
		if f := v.Field(i); f.Kind() == reflect.Struct {
			errs = append(errs, applyEnv(f, name+"_", getenv))
			continue
		}
		raw := getenv(name)
		if raw == "" {
			continue
		}
		if err := setField(v.Field(i), raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func setField(f reflect.Value, raw string) error {
	switch f.Interface().(type) {
	case string:
		f.SetString(raw)
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		f.SetFloat(n)
	case []string:
		f.Set(reflect.ValueOf(strings.Split(raw, ",")))
	case int, int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ServerName == "" || strings.ContainsAny(c.ServerName, "/@!#$ ") {
		bad("server_name %q is not a valid server name", c.ServerName)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.DataDir == "" {
		bad("data_dir must not be empty")
	}
	if c.Registration != "open" && c.Registration != "closed" {
		bad("registration must be open or closed, not %q", c.Registration)
	}
	if c.Guests != "on" && c.Guests != "off" {
		bad("guests must be on or off, not %q", c.Guests)
	}
	if !roomversion.IsSupported(c.DefaultRoomVer) {
		bad("default_room_version must be a room version from 1 to 12, not %q", c.DefaultRoomVer)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format must be text or json, not %q", c.LogFormat)
	}
	if c.MaxRequestBody < 70<<10 {
		bad("max_request_body must be at least 71680 bytes (events may be 64 KiB), not %d", c.MaxRequestBody)
	}
	if c.LongPollMin < 0 || c.LongPollMax <= 0 || c.LongPollMin > c.LongPollMax {
		bad("long poll limits must satisfy 0 <= long_poll_min <= long_poll_max, 0 < long_poll_max")
	}
	if c.LongPollDefault <= 0 || c.LongPollDefault > c.LongPollMax {
		bad("long_poll_default must be positive and at most long_poll_max")
	}
	if c.PeekWindow < 16 || c.PeekWindow > 1<<20 {
		bad("peek_window must be between 16 and 1048576, not %d", c.PeekWindow)
	}
	if c.SQLiteReaders < 1 || c.SQLiteReaders > 256 {
		bad("sqlite_readers must be between 1 and 256, not %d", c.SQLiteReaders)
	}
	if c.RateLimit != "on" && c.RateLimit != "off" {
		bad("rate_limit must be on or off, not %q", c.RateLimit)
	}
	for name, v := range map[string]float64{"rate_limit_ip_per_second": c.IPRequestsPerSec, "rate_limit_user_per_second": c.UserRequestsPerS, "rate_limit_register_per_second": c.RegisterPerSec} {
		if v <= 0 {
			bad("%s must be positive, not %g", name, v)
		}
	}
	for name, v := range map[string]int{"rate_limit_ip_burst": c.IPRequestsBurst, "rate_limit_user_burst": c.UserRequestsBurst, "rate_limit_register_burst": c.RegisterBurst} {
		if v < 1 {
			bad("%s must be at least 1, not %d", name, v)
		}
	}
	if c.ToDeviceInboxLimit < 1 || c.ToDeviceInboxLimit > 1000000 {
		bad("to_device_inbox_limit must be between 1 and 1000000, not %d", c.ToDeviceInboxLimit)
	}
	if c.MaxPollsPerUser < 1 || c.MaxPollsPerIP < 1 {
		bad("max_longpolls_per_user and max_longpolls_per_ip must be at least 1")
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			bad("trusted_proxies: %q is neither an IP address nor a CIDR range", p)
		}
	}
	if c.PushAllowPrivate != "on" && c.PushAllowPrivate != "off" {
		bad("push_allow_private must be on or off, not %q", c.PushAllowPrivate)
	}
	if c.PushTrust != "" {
		if pem, err := os.ReadFile(c.PushTrust); err != nil {
			bad("push_trust: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("push_trust: %s holds no PEM certificate", c.PushTrust)
		}
	}
	for _, u := range c.TurnURIs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			bad("turn_uris: %q is not a turn:, turns: or stun: URI", u)
		}
	}
	if c.TurnUserLifetime < time.Second || c.TurnUserLifetime > 7*24*time.Hour {
		bad("turn_user_lifetime must be between 1s and 168h, not %s", c.TurnUserLifetime)
	}
	if c.TurnSharedSecret != "" && c.TurnUsername != "" {
		bad("turn_shared_secret and turn_username exclude each other")
	}
	errs = append(errs, c.Federation.validate()...)
	if c.AppServiceQueryTimeout < 100*time.Millisecond || c.AppServiceQueryTimeout > 5*time.Minute {
		bad("app_service_query_timeout must be between 100ms and 5m, not %s", c.AppServiceQueryTimeout)
	}
	for i, f := range c.AppServiceConfigFiles {
		if strings.TrimSpace(f) == "" {
			bad("app_service_config_files[%d] is empty", i)
		}
	}
	if c.MaxConnections < 0 {
		bad("max_connections must not be negative")
	}
	if c.PGMaxConns < 2 || c.PGMaxConns > 1000 {
		bad("postgres_max_connections must be between 2 and 1000, not %d", c.PGMaxConns)
	}
	if c.PGConnMaxLifetime < 0 {
		bad("postgres_conn_max_lifetime must not be negative")
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		bad("bcrypt_cost must be between 4 and 31, not %d", c.BcryptCost)
	}
	for key, v := range map[string]string{"web.enabled": c.Web.Enabled, "web.guest_posting": c.Web.GuestPosting, "web.noindex": c.Web.NoIndex} {
		if v != "on" && v != "off" {
			bad("%s must be on or off, not %q", key, v)
		}
	}
	if !strings.HasPrefix(c.Web.Path, "/") || !strings.HasSuffix(c.Web.Path, "/") || strings.HasPrefix(c.Web.Path, "/_matrix/") || strings.ContainsAny(c.Web.Path, "{}?# ") {
		bad("web.path must start and end with / and not be under /_matrix/, not %q", c.Web.Path)
	}
	if strings.ContainsAny(c.Web.FrameAncestors, ";,\n") || strings.TrimSpace(c.Web.FrameAncestors) == "" {
		bad("web.frame_ancestors must be a CSP source list such as * or 'self' https://example.org, not %q", c.Web.FrameAncestors)
	}
	if c.Web.CommentRooms != "" {
		if strings.ContainsAny(c.Web.CommentRooms, ":#@!/ ") || len(c.Web.CommentRooms) > 100 {
			bad("web.comment_rooms must be an alias localpart prefix such as comments_, not %q", c.Web.CommentRooms)
		}
		if local, server, ok := strings.Cut(strings.TrimPrefix(c.Web.CommentRoomsOwner, "@"), ":"); !ok || local == "" || server != c.ServerName || !strings.HasPrefix(c.Web.CommentRoomsOwner, "@") {
			bad("web.comment_rooms needs web.comment_rooms_owner, a user ID on this server (@name:%s), not %q", c.ServerName, c.Web.CommentRoomsOwner)
		}
	}
	if c.Web.PagesPerSecond <= 0 || c.Web.PagesBurst < 1 {
		bad("web.pages_per_second must be positive and web.pages_burst at least 1")
	}
	if c.Pprof != "" {
		host, _, err := net.SplitHostPort(c.Pprof)
		if err != nil {
			bad("pprof %q: %v", c.Pprof, err)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			bad("pprof must listen on a loopback address, not %q", c.Pprof)
		}
	}
	c.validateMedia(bad)
	return errors.Join(errs...)
}

func (f *Federation) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("federation."+format, args...)) }
	if f.Listen != "" {
		if _, _, err := net.SplitHostPort(f.Listen); err != nil {
			bad("listen %q: %v", f.Listen, err)
		}
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		bad("tls_cert and tls_key go together: give both, or neither for plain HTTP behind a proxy")
	} else if f.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey); err != nil {
			bad("tls_cert/tls_key: %v", err)
		}
	}
	if f.WellKnownServer != "" {
		if _, _, ok := federation.ParseServerName(f.WellKnownServer); !ok {
			bad("well_known_server %q is not a server name (host or host:port)", f.WellKnownServer)
		}
	}
	if f.Trust != "" {
		if pem, err := os.ReadFile(f.Trust); err != nil {
			bad("trust: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			bad("trust: %s holds no PEM certificate", f.Trust)
		}
	}
	if f.AllowPrivateAddresses != "on" && f.AllowPrivateAddresses != "off" {
		bad("allow_private_addresses must be on or off, not %q", f.AllowPrivateAddresses)
	}
	for i, ks := range f.TrustedKeyServers {
		if _, _, ok := federation.ParseServerName(ks.ServerName); !ok {
			bad("trusted_key_servers[%d]: server_name %q is not a server name", i, ks.ServerName)
		}
		if len(ks.VerifyKeys) == 0 {
			bad("trusted_key_servers[%d] (%s): verify_keys must list the notary's keys", i, ks.ServerName)
		}
		for id, key := range ks.VerifyKeys {
			if raw, err := base64.RawStdEncoding.DecodeString(key); !strings.HasPrefix(id, "ed25519:") || err != nil || len(raw) != ed25519.PublicKeySize {
				bad("trusted_key_servers[%d] (%s): %q must be an ed25519 key ID with an unpadded base64 ed25519 key", i, ks.ServerName, id)
			}
		}
	}
	if f.MaxRequestBody < 70<<10 || f.MaxRequestBody > 1<<30 {
		bad("max_request_body must be between 71680 bytes (one event) and 1 GiB, not %d", f.MaxRequestBody)
	}
	if f.RequestsPerSec <= 0 || f.RequestsBurst < 1 {
		bad("rate_limit_per_second must be positive and rate_limit_burst at least 1")
	}
	return errs
}

func (c *Config) validateMedia(bad func(string, ...any)) {
	m := c.Media
	if m.MaxUploadSize < 1<<10 || m.MaxUploadSize > 4<<30 {
		bad("media.max_upload_size must be between 1024 bytes and 4 GiB, not %d", m.MaxUploadSize)
	}
	if m.MaxImagePixels < 1<<20 || m.MaxImagePixels > 256<<20 {
		bad("media.max_image_pixels must be between 1048576 and 268435456, not %d", m.MaxImagePixels)
	}
	if m.UploadQuota < 0 {
		bad("media.upload_quota must not be negative (0: no quota)")
	}
	if m.QuotaPeriod < time.Minute {
		bad("media.upload_quota_period must be at least 1m, not %s", m.QuotaPeriod)
	}
	if m.UploadsPerSec <= 0 || m.UploadsBurst < 1 {
		bad("media.uploads_per_second must be positive and media.uploads_burst at least 1")
	}
	if m.MaxPending < 1 || m.MaxPending > 1000 {
		bad("media.max_pending_uploads must be between 1 and 1000, not %d", m.MaxPending)
	}
	if m.PendingExpiry < time.Minute || m.PendingExpiry > 30*24*time.Hour {
		bad("media.pending_expiry must be between 1m and 720h, not %s", m.PendingExpiry)
	}
	if _, err := c.MediaLegacyCutoff(); err != nil {
		bad("media.legacy_unauthenticated must be none, all or an RFC 3339 time, not %q", m.LegacyUnauth)
	}
	if m.URLPreview != "on" && m.URLPreview != "off" {
		bad("media.url_preview must be on or off, not %q", m.URLPreview)
	}
}

// MediaLegacyCutoff is the time (unix ms) before which media must have been created to be
// served by the unauthenticated endpoints: 0 for none, the largest int64 for all.
func (c *Config) MediaLegacyCutoff() (int64, error) {
	switch c.Media.LegacyUnauth {
	case "none":
		return 0, nil
	case "all":
		return math.MaxInt64, nil
	}
	t, err := time.Parse(time.RFC3339, c.Media.LegacyUnauth)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}

// MediaPath is the directory of the media store.
func (c *Config) MediaPath() string {
	if c.Media.Dir != "" {
		return c.Media.Dir
	}
	return filepath.Join(c.DataDir, "media")
}

// DatabaseURL resolves the database setting: empty means SQLite in the data directory.
func (c *Config) DatabaseURL() string {
	if c.Database == "" {
		return "sqlite://" + filepath.Join(c.DataDir, "porthole.db")
	}
	return c.Database
}

// BaseURL is what /.well-known/matrix/client advertises.
func (c *Config) BaseURL() string {
	if c.PublicBaseURL != "" {
		return strings.TrimRight(c.PublicBaseURL, "/")
	}
	return "http://" + c.Listen
}
