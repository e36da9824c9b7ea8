package config

import (
	"fmt"
	"strings"
)

// Sample renders a commented configuration file holding every setting at its value in c
// (porthole generate-config prints Sample(Default())).
func Sample(c Config) string {
	var b strings.Builder
	line := func(comment string, key string, value any) {
		if comment != "" {
			for _, l := range strings.Split(comment, "\n") {
				fmt.Fprintf(&b, "# %s\n", l)
			}
		}
		fmt.Fprintf(&b, "%s: %v\n\n", key, value)
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	b.WriteString("# Porthole homeserver configuration.\n# Every key can also be set with the environment variable PORTHOLE_<KEY> (upper case),\n# and the common ones with command-line flags; flags win over the environment, which wins over this file.\n\n")
	line("The server name: the part after the colon in user IDs, room aliases and (room v1 to v11) room IDs.\nIt cannot be changed once users exist.", "server_name", q(c.ServerName))
	line("Address for the client API (host:port).", "listen", q(c.Listen))
	line("Directory for the SQLite database and the signing key; created if missing.", "data_dir", q(c.DataDir))
	line("Database: empty for SQLite in data_dir, a sqlite:// path for another SQLite file,\nor postgres://user@host:5432/db for PostgreSQL.", "database", q(c.Database))
	line("Base URL clients should use, advertised at /.well-known/matrix/client (default: http://<listen>).", "public_baseurl", q(c.PublicBaseURL))
	line("Whether anyone may register an account: open or closed.", "registration", c.Registration)
	line("Whether visitors may register guest accounts (POST /register?kind=guest): on or off.\nExisting guests keep working when this is turned off.", "guests", c.Guests)
	line("Room version for new rooms when the client does not ask for one: 1 to 12.\nVersions 1 to 9 exist for older rooms and clients that ask for them; 10 is what most servers use.", "default_room_version", q(c.DefaultRoomVer))
	line("Log level: debug, info, warn or error.", "log_level", c.LogLevel)
	line("Log format: text or json.", "log_format", c.LogFormat)
	line("Largest request body accepted, in bytes; larger ones get 413 M_TOO_LARGE.", "max_request_body", c.MaxRequestBody)
	line("Long-poll timeout of /events and /sync when the client gives none.", "long_poll_default", c.LongPollDefault)
	line("Longest long-poll timeout honoured; larger requested timeouts are cut to this.", "long_poll_max", c.LongPollMax)
	line("Shortest non-zero long-poll timeout; smaller ones are raised to this so looping clients do not spin the server.", "long_poll_min", c.LongPollMin)
	line("Recent stream items each active room keeps in memory, encoded once, for long-polls.", "peek_window", c.PeekWindow)
	line("Loopback host:port for a separate /debug/pprof listener; empty disables it.", "pprof", q(c.Pprof))
	line("Read connections in the SQLite pool (writes always use one connection).", "sqlite_readers", c.SQLiteReaders)
	line("Rate limiting: on or off. Off is for test suites and benchmarks; a server open to the internet keeps it on.", "rate_limit", c.RateLimit)
	line("Requests per second each client IP may make (token bucket), and the burst above that.", "rate_limit_ip_per_second", c.IPRequestsPerSec)
	line("", "rate_limit_ip_burst", c.IPRequestsBurst)
	line("Requests per second each user (or guest) may make, and the burst.", "rate_limit_user_per_second", c.UserRequestsPerS)
	line("", "rate_limit_user_burst", c.UserRequestsBurst)
	line("Registrations (user or guest) and logins per second from one IP, and the burst.", "rate_limit_register_per_second", c.RegisterPerSec)
	line("", "rate_limit_register_burst", c.RegisterBurst)
	line("Long-polls (/events, /sync) one user, and one IP, may have waiting at once (with rate_limit on).", "max_longpolls_per_user", c.MaxPollsPerUser)
	line("", "max_longpolls_per_ip", c.MaxPollsPerIP)
	line("Open client connections at most; 0 means the open-files limit minus 512. At the cap, new\nconnections wait in the kernel's queue and the log says so.", "max_connections", c.MaxConnections)
	line("Undelivered to-device messages (encryption keys, verification) a device's inbox may hold;\nwhen it is full, senders that name the device get 429 M_LIMIT_EXCEEDED until it syncs.", "to_device_inbox_limit", c.ToDeviceInboxLimit)
	line("Load balancers whose X-Forwarded-For header is believed (IP addresses or CIDR ranges, e.g.\n[\"127.0.0.1/32\", \"10.0.0.0/8\"]); behind a proxy, per-IP limits otherwise see only the proxy.", "trusted_proxies", "[]")
	line("Push gateways (pushers' URLs are chosen by users): on allows pushes to loopback, private and\nlink-local addresses, which are refused by default (checked on the address connected to).", "push_allow_private", q(c.PushAllowPrivate))
	line("A PEM file of certificates trusted for push gateways' and application services' TLS, besides\nthe system's roots (empty: none).", "push_trust", q(c.PushTrust))
	line("Application service registration files (bridges, bots, Cactus Comments): YAML files as the\nservices generate them, e.g. [\"/etc/porthole/mautrix-telegram.yaml\"]. Checked at start: a file\nthat does not parse, a regex that does not compile or a duplicate id or token refuses to start.\nThe --appservice FILE flag (repeatable) adds more.", "app_service_config_files", "[]")
	line("How long a client waits at most for an application service asked on its behalf (a user or\nalias query, a third-party lookup, a ping) before it gets an error.", "app_service_query_timeout", c.AppServiceQueryTimeout)
	line("PostgreSQL: connections in the pool, and how long one is kept (0: for ever).", "postgres_max_connections", c.PGMaxConns)
	line("", "postgres_conn_max_lifetime", c.PGConnMaxLifetime)
	line("TURN server URIs handed to VoIP clients (GET /voip/turnServer), e.g. [\"turn:turn.example.org?transport=udp\"];\nempty: none, and the endpoint answers {}.", "turn_uris", "[]")
	line("Secret shared with the TURN server (coturn's static-auth-secret): each user gets a username\n\"<expiry>:<user ID>\" and the password base64(HMAC-SHA1(secret, username)).", "turn_shared_secret", q(c.TurnSharedSecret))
	line("Fixed TURN credentials, used instead when there is no shared secret.", "turn_username", q(c.TurnUsername))
	line("", "turn_password", q(c.TurnPassword))
	line("How long TURN credentials are valid.", "turn_user_lifetime", c.TurnUserLifetime)
	line("Whether guests may get TURN credentials.", "turn_allow_guests", c.TurnAllowGuests)
	line("bcrypt work factor for stored passwords (4-31); each step doubles the cost of a login.", "bcrypt_cost", c.BcryptCost)
	b.WriteString("# The public window: every world-readable room as a web page, live, and embeddable.\nweb:\n")
	sub := func(comment, key string, value any) {
		if comment != "" {
			for _, l := range strings.Split(comment, "\n") {
				fmt.Fprintf(&b, "  # %s\n", l)
			}
		}
		fmt.Fprintf(&b, "  %s: %v\n", key, value)
	}
	sub("on or off: the room directory at path, /room/<room> pages and /embed/<room>.", "enabled", c.Web.Enabled)
	sub("Where the pages live: / or a prefix such as /web/ (never under /_matrix/).", "path", q(c.Web.Path))
	sub("on or off: visitors of an embed may pick a name and post as guests where the room allows guests to join.", "guest_posting", c.Web.GuestPosting)
	sub("Which sites may frame /embed pages (a CSP frame-ancestors source list).", "frame_ancestors", q(c.Web.FrameAncestors))
	sub("on or off: ask search engines not to index any page (rooms can also opt out by not being published).", "noindex", c.Web.NoIndex)
	sub("Page loads per second each client IP may make (with rate_limit on), and the burst.", "pages_per_second", c.Web.PagesPerSecond)
	sub("", "pages_burst", c.Web.PagesBurst)
	sub("Comment sections created on first visit: an alias localpart prefix (e.g. comments_). A page or\nembed of an unknown alias #<prefix>…:<server_name> creates that room, world-readable and open\nto guests, owned by comment_rooms_owner (a local user, created at start when missing). Empty: off.", "comment_rooms", q(c.Web.CommentRooms))
	sub("", "comment_rooms_owner", q(c.Web.CommentRoomsOwner))
	f := c.Federation
	b.WriteString("\n# Federation: the server-server API, on a listener of its own. Off unless listen is set.\nfederation:\n")
	sub("Address of the federation listener (host:port, e.g. \"0.0.0.0:8448\"); empty: federation off.", "listen", q(f.Listen))
	sub("PEM certificate and key for the listener's TLS. Leave both empty to speak plain HTTP\nbehind a reverse proxy that terminates TLS.", "tls_cert", q(f.TLSCert))
	sub("", "tls_key", q(f.TLSKey))
	sub("Delegation: the host[:port] other servers should connect to, served as m.server at\n/.well-known/matrix/server (empty: not served).", "well_known_server", q(f.WellKnownServer))
	sub("A PEM file of certificates trusted for outgoing TLS besides the system's roots (empty: none).", "trust", q(f.Trust))
	sub("on allows outgoing requests to loopback, private and link-local addresses, refused by\ndefault (checked on the address connected to). For tests on one machine only.", "allow_private_addresses", q(f.AllowPrivateAddresses))
	sub("Notaries asked for other servers' signing keys when a server cannot be asked itself, with\nthe keys their answers must be signed by, e.g.\n  - server_name: \"matrix.org\"\n    verify_keys:\n      \"ed25519:auto\": \"Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw\"\nNone by default: keys are fetched from each server directly.", "trusted_key_servers", "[]")
	sub("Largest request body accepted from another server, in bytes (413 M_TOO_LARGE above).", "max_request_body", f.MaxRequestBody)
	sub("Requests per second each other server may make (token bucket, with rate_limit on), and the burst.", "rate_limit_per_second", f.RequestsPerSec)
	sub("", "rate_limit_burst", f.RequestsBurst)
	b.WriteString("\n# The media repository (uploads, downloads, thumbnails, URL previews).\nmedia:\n")
	sub("The directory of uploaded files, named by their SHA-256 so identical uploads share one file\n(empty: data_dir/media). Several nodes on one PostgreSQL must share it.", "dir", q(c.Media.Dir))
	sub("Largest upload in bytes (advertised as m.upload.size); larger ones get 413 M_TOO_LARGE.", "max_upload_size", c.Media.MaxUploadSize)
	sub("Images with more pixels than this are stored but not thumbnailed (413 M_TOO_LARGE); no image\nis decoded before its dimensions are checked against it.", "max_image_pixels", c.Media.MaxImagePixels)
	sub("Bytes one user may upload per period (0: no quota); beyond it uploads get 403 M_FORBIDDEN.", "upload_quota", c.Media.UploadQuota)
	sub("", "upload_quota_period", c.Media.QuotaPeriod)
	sub("Uploads and POST /create per second per user, and the burst (with rate_limit on).", "uploads_per_second", c.Media.UploadsPerSec)
	sub("", "uploads_burst", c.Media.UploadsBurst)
	sub("Media IDs made with POST /_matrix/media/v1/create that one user may have waiting for content;\nmore get 429 M_LIMIT_EXCEEDED. Unused IDs expire after pending_expiry.", "max_pending_uploads", c.Media.MaxPending)
	sub("", "pending_expiry", c.Media.PendingExpiry)
	sub("What the deprecated unauthenticated /_matrix/media/v3/download and /thumbnail still serve:\nnone, all, or an RFC 3339 time (e.g. \"2024-09-01T00:00:00Z\") before which media must have been\nuploaded; the rest only through the authenticated /_matrix/client/v1/media endpoints.", "legacy_unauthenticated", q(c.Media.LegacyUnauth))
	sub("URL previews (GET /media/preview_url): on or off. On, the server fetches the pages users ask\nabout, never from loopback, private or link-local addresses.", "url_preview", q(c.Media.URLPreview))
	b.WriteString("\n# The user directory (POST /user_directory/search).\nuser_directory:\n")
	sub("true finds every user; false (Synapse's default) only users who share a room with the searcher\nor are in rooms anyone may join or read.", "search_all_users", c.UserDirectory.SearchAllUsers)
	return b.String()
}
