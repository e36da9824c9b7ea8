package storage

import "context"

// ClientIP is where a device's requests came from: one row per (device, IP address, user
// agent), with when it was last seen (unix ms).
type ClientIP struct {
	UserID    string
	DeviceID  string
	IP        string
	UserAgent string
	LastSeen  int64
}

// What a report is about.
const (
	ReportEvent = "event"
	ReportRoom  = "room"
	ReportUser  = "user"
)

// Report is a user's report of an event, a room or a user, kept for administrators.
type Report struct {
	ID         int64
	Kind       string // ReportEvent, ReportRoom or ReportUser
	Reporter   string
	RoomID     string // event and room reports
	EventID    string // event reports
	TargetUser string // user reports
	Reason     string
	// Content is the JSON request body of an event report ("{}" for the others).
	Content    []byte
	ReceivedTS int64
}

// AdminReader reads what administrators look at: client addresses, OpenID tokens, reports.
type AdminReader interface {
	// ClientIPs returns where the user's devices connected from, latest first.
	ClientIPs(ctx context.Context, userID string) ([]ClientIP, error)
	// OpenIDToken returns the user an OpenID token was issued to, if it has not expired at
	// now (ErrNotFound otherwise).
	OpenIDToken(ctx context.Context, tokenHash string, now int64) (string, error)
	// Reports returns the latest reports, newest first, at most limit.
	Reports(ctx context.Context, limit int) ([]Report, error)
	// SearchUserDirectory finds users as q says, by user ID, at most q.Limit.
	SearchUserDirectory(ctx context.Context, q DirectoryQuery) ([]DirectoryEntry, error)
}

// AdminTx changes them.
type AdminTx interface {
	// SetAdmin grants or removes server administration (ErrNotFound for an unknown user).
	SetAdmin(ctx context.Context, userID string, admin bool) error
	// PutClientIPs records connections, keeping the latest time seen of each, and moves
	// their devices' last seen time and address forward.
	PutClientIPs(ctx context.Context, ips []ClientIP) error
	// PruneClientIPs forgets connections last seen before a time.
	PruneClientIPs(ctx context.Context, before int64) error
	// PutOpenIDToken stores a token valid until expiresTS, and forgets those expired at now.
	PutOpenIDToken(ctx context.Context, tokenHash, userID string, expiresTS, now int64) error
	// PutReport stores a report and returns its ID.
	PutReport(ctx context.Context, r Report) (int64, error)
}

// DirectoryEntry is a user as the user directory shows them.
type DirectoryEntry struct {
	UserID      string
	DisplayName *string
	AvatarURL   *string
}

// DirectoryQuery is a user directory search: users with, for each of Words, a word that
// begins with it; all users but the searcher when AllUsers, else those who share a room
// with the searcher or are in a room anyone may join or read (as Synapse's default).
type DirectoryQuery struct {
	Searcher string
	Words    []string
	AllUsers bool
	Limit    int
}
