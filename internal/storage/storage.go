// Package storage defines Porthole's domain records and the Store interface that the one SQL
// implementation (storage/sqlstore) provides for SQLite and PostgreSQL.
//
// Writes that must be atomic go through Store.Write, which runs a function inside one
// transaction; on SQLite all writes share one connection, so commits happen in the order
// stream positions were taken, and a position is visible only once everything below it is.
package storage

import (
	"context"
	"encoding/json"
	"errors"

	"porthole/internal/stream"
)

var (
	// ErrNotFound is returned when a looked-up record does not exist (never nil, nil).
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a unique record already exists.
	ErrConflict = errors.New("already exists")
)

// User is an account, guest or not.
type User struct {
	ID           string
	PasswordHash string
	IsGuest      bool
	Deactivated  bool
	DisplayName  *string
	AvatarURL    *string
	CreatedTS    int64
	// Admin marks a server administrator (porthole create-user --admin).
	Admin bool
}

// Device is one login of a user.
type Device struct {
	UserID      string
	ID          string
	DisplayName *string
	LastSeenTS  int64
	LastSeenIP  string
	CreatedTS   int64
}

// UIASession is a user-interactive auth session: the operation it was started for, the
// stages done, what the first request asked for (Params, so later requests need not repeat
// it) and, once the operation ran, its result (Result; registration: the user ID).
type UIASession struct {
	// UserID is the account the session acted for, once known (kept in its own column).
	UserID    string          `json:"-"`
	Op        string          `json:"op"`
	Completed []string        `json:"completed"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    string          `json:"result,omitempty"`
}

// TokenOwner is what an access token resolves to.
type TokenOwner struct {
	UserID   string
	DeviceID string
	IsGuest  bool
}

// Room is a room's durable head: its version and the end of its (linear) event graph.
type Room struct {
	ID        string
	Version   string
	Creator   string
	Published bool
	// HeadEventID is the latest event persisted in the room; it changes with every event,
	// so a writer can tell whether the room moved on since it read it.
	HeadEventID string
	// Extremities are the room's forward extremities: the events nothing points at yet,
	// which a new event names as its prev_events.
	Extremities []string
	// Depth is the greatest depth of the room's events.
	Depth      int64
	CreatedPos stream.Pos
}

// Event is a stored room event: the signed PDU plus what the server derived when it
// persisted it. Events of one room form a line: each one's prev_events is the one before.
type Event struct {
	Pos      stream.Pos
	ID       string
	RoomID   string
	Type     string
	StateKey *string
	Sender   string
	Depth    int64
	OriginTS int64
	// PDU is the event as signed (federation format); after a redaction it is the pruned PDU.
	PDU []byte
	// Unsigned is a JSON object of server-added fields (prev_content, replaces_state, ...)
	// or nil.
	Unsigned []byte
	// Visibility is the history_visibility in force at the event; for an
	// m.room.history_visibility event, the less restrictive of the old and new values.
	Visibility string
	// Membership and PrevMembership are set for m.room.member events (the target's new and
	// previous membership).
	Membership     string
	PrevMembership string
	// TxnID and TxnDevice identify the client transaction that sent the event, if any.
	TxnID     string
	TxnDevice string
	// RedactedBecause is the client-format JSON of the redaction that pruned this event.
	RedactedBecause []byte
	// StateGroup is the explicit state after the event (see StateGroup), or 0 when the
	// state after it is the room's state as of its position (every event that extended the
	// room's current state).
	StateGroup int64
	// Outlier is "" for events of the timeline; otherwise why the event is kept aside:
	// OutlierPlain, OutlierSoftFailed or OutlierRejected (see OutlierReason).
	Outlier       string
	OutlierReason string
}

// Why an event is not in the timeline.
const (
	// OutlierPlain: an event fetched to check others, or part of a joined room's state.
	OutlierPlain = "outlier"
	// OutlierSoftFailed: accepted into the room's graph, but it failed against the room's
	// current state, so clients never see it.
	OutlierSoftFailed = "soft_failed"
	// OutlierRejected: it failed the auth rules; kept so that it is not fetched again.
	OutlierRejected = "rejected"
)

// StateGroup is the state after an event that is not the room's state as of its position:
// the room's state as of BasePos with Entries on top (an empty event ID removes the key).
type StateGroup struct {
	ID      int64
	RoomID  string
	BasePos stream.Pos
	Entries map[StateKeyOf]string
}

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// StateKeyOf is a (type, state_key) pair.
type StateKeyOf struct {
	Type     string
	StateKey string
}

// Member is a user's current membership in a room.
type Member struct {
	RoomID     string
	UserID     string
	Membership string
	EventID    string
	Pos        stream.Pos
	Forgotten  bool
	// JoinedPos is where the member's current stretch of being joined began (a profile
	// change keeps it); 0 when not joined.
	JoinedPos stream.Pos
}

// Relation is an event that relates to another: its content's m.relates_to names a
// rel_type and a parent event_id. It carries what aggregations need of the child, so that
// bundling reads neither PDUs nor the events table.
type Relation struct {
	EventID string
	RoomID  string
	Parent  string
	RelType string
	// Key is an m.annotation's key ("" for other types).
	Key string
	// NewContent reports an m.new_content object in the content (a valid m.replace has one).
	NewContent bool
	Pos        stream.Pos
	Type       string
	Sender     string
	OriginTS   int64
	// Visibility is the history visibility in force at the child (Event.Visibility).
	Visibility string
}

// Relation returns r itself: stored relations are children as internal/relations
// aggregates them.
func (r *Relation) Relation() *Relation { return r }

// RelationQuery selects children of one event (GET /relations): those with
// After < pos <= UpTo, oldest first when Forward, else newest first, at most Limit. Empty
// filters match anything; Recurse also follows relations of relations (three levels).
type RelationQuery struct {
	RoomID, Parent     string
	RelType, EventType string
	Sender, Key        string
	After, UpTo        stream.Pos
	Forward            bool
	Limit              int
	Recurse            bool
}

// Thread is a thread root with the position and ID of its latest reply.
type Thread struct {
	RootID    string
	LatestPos stream.Pos
	LatestID  string
}

// PushActions is what one member's push rules decided for an event.
type PushActions struct {
	Notify    bool
	Highlight bool
	// Actions is the JSON array of the matching rule's actions ("[]" for none).
	Actions string
}

// PushException is a member whose outcome differs from the event's base outcome.
type PushException struct {
	UserID string
	PushActions
}

// PushOutcome is what the push rules decided for one event. Base applies to every local
// member joined at the event except its sender and the members in Exceptions, so an event
// costs one row however large the room.
type PushOutcome struct {
	Pos      stream.Pos
	RoomID   string
	ThreadID string // "" for the main timeline
	Sender   string
	TS       int64
	Base     PushActions
	// Exceptions, sorted by user ID.
	Exceptions []PushException
}

// For returns the outcome for a member joined at the event.
func (o *PushOutcome) For(userID string) PushActions {
	if userID == o.Sender {
		return PushActions{Actions: "[]"}
	}
	for _, x := range o.Exceptions {
		if x.UserID == userID {
			return x.PushActions
		}
	}
	return o.Base
}

// Pusher is an HTTP pusher: where to send a user's notifications.
type Pusher struct {
	ID                int64
	UserID            string
	DeviceID          string
	Kind              string
	AppID             string
	PushKey           string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	// Data is the pusher's data object as JSON (url, format, anything else for the gateway).
	Data      []byte
	PushKeyTS int64
}

// PushCount is a user's unread notifications in one thread of a room.
type PushCount struct {
	ThreadID  string
	Notify    int
	Highlight int
}

// Notification is an event a user was notified of (GET /notifications).
type Notification struct {
	Pos      stream.Pos
	EventID  string
	RoomID   string
	ThreadID string
	TS       int64
	PushActions
}

// Receipt is one read receipt.
type Receipt struct {
	Pos      stream.Pos
	RoomID   string
	Type     string // m.read, m.read.private
	UserID   string
	ThreadID string // "" for unthreaded
	EventID  string
	// EventPos is the stream position of EventID.
	EventPos stream.Pos
	TS       int64
}

// Typing is the set of users typing in a room, as of Pos.
type Typing struct {
	RoomID  string
	Pos     stream.Pos
	UserIDs []string
}

// Presence is one user's presence.
type Presence struct {
	UserID          string
	State           string
	StatusMsg       *string
	LastActiveTS    int64
	CurrentlyActive bool
	Pos             stream.Pos
}

// AccountData is one account-data item; RoomID is "" for global data.
type AccountData struct {
	UserID  string
	RoomID  string
	Type    string
	Content []byte
	Pos     stream.Pos
}

// Alias maps a room alias to a room.
type Alias struct {
	Alias   string
	RoomID  string
	Creator string
}

// PublishedRoom is a room listed in the directory, with the state the directory shows.
type PublishedRoom struct {
	RoomID string
	Joined int
	// State holds the current state events of DirectoryStateTypes that the room has.
	State []Event
}

// DirectoryLists chooses room directory lists: the server's own (the zero value), one
// that an application service keeps for a third-party network, or all of them.
type DirectoryLists struct {
	AppServiceID, NetworkID string
	All                     bool
}

// DirectoryStateTypes are the state events (state key "") a directory entry is made of.
var DirectoryStateTypes = []string{"m.room.name", "m.room.topic", "m.room.canonical_alias", "m.room.avatar",
	"m.room.history_visibility", "m.room.guest_access", "m.room.join_rules", "m.room.create"}

// OutboxItem is one queued delivery of the durable outbox (internal/outbox): an opaque
// payload for a destination of a kind, in the destination's order (Seq).
type OutboxItem struct {
	Kind        string
	Destination string
	Seq         int64
	Payload     []byte
	CreatedTS   int64
}

// OutboxDestination is a destination's delivery state: its backoff and who holds its lease.
type OutboxDestination struct {
	Kind        string
	Destination string
	Failures    int
	RetryTS     int64 // no delivery before this time (unix ms)
	LeaseOwner  string
	LeaseUntil  int64 // unix ms
	LastError   string
	// BatchEnd is the last Seq of the batch being attempted, for kinds whose retries must
	// carry the same items (0: none recorded).
	BatchEnd int64
}

// PushReader reads push outcomes, counts and notifications.
type PushReader interface {
	// PushOutcomes returns the push outcomes of the room's unredacted events with
	// from < pos <= to, newest first, at most limit, with their exceptions.
	PushOutcomes(ctx context.Context, roomID string, from, to stream.Pos, limit int) ([]PushOutcome, error)
	// PushCounts counts, per thread, the unredacted events after pos of which the user
	// (joined since at most after) was notified, and those that highlighted.
	PushCounts(ctx context.Context, roomID, userID string, after stream.Pos) ([]PushCount, error)
	// Notifications returns the events before pos (0: any) the user was notified of in
	// the rooms they are joined to (and invites), newest first, at most limit.
	Notifications(ctx context.Context, userID string, before stream.Pos, limit int, onlyHighlight bool) ([]Notification, error)
	// UserReceipts returns the user's m.read and m.read.private receipts in every room.
	UserReceipts(ctx context.Context, userID string) ([]Receipt, error)
	// Pushers returns a user's pushers, oldest first; with userID "", everyone's.
	Pushers(ctx context.Context, userID string) ([]Pusher, error)
	Pusher(ctx context.Context, id int64) (Pusher, error)
}

// OutboxReader is the read side of the outbox tables.
type OutboxReader interface {
	// OutboxItems returns the destination's first queued items in order, at most limit.
	OutboxItems(ctx context.Context, kind, dest string, limit int) ([]OutboxItem, error)
	OutboxDestination(ctx context.Context, kind, dest string) (OutboxDestination, error)
	// OutboxCount counts the destination's queued items.
	OutboxCount(ctx context.Context, kind, dest string) (int64, error)
	// OutboxDue lists destinations with queued items whose backoff is over and whose lease
	// is free or expired at now, earliest retry first, at most limit.
	OutboxDue(ctx context.Context, now int64, limit int) ([]OutboxDestination, error)
	// OutboxNextRetry is the earliest retry time after now of a destination with queued
	// items (0 when there is none).
	OutboxNextRetry(ctx context.Context, now int64) (int64, error)
}

// OutboxWriter changes the outbox tables. The methods taking an owner change nothing and
// return false when owner does not hold the destination's lease.
type OutboxWriter interface {
	// OutboxEnqueue appends an item to the destination's queue. Positions in a queue are
	// taken under the destination's row lock, so they follow commit order.
	OutboxEnqueue(ctx context.Context, kind, dest string, payload []byte, now int64) error
	// OutboxPurge deletes a destination with its queue.
	OutboxPurge(ctx context.Context, kind, dest string) error
	// OutboxLease gives owner the destination until until, if its backoff is over and its
	// lease is free, expired or already owner's.
	OutboxLease(ctx context.Context, kind, dest, owner string, now, until int64) (bool, error)
	// OutboxDelivered removes the items up to upToSeq, resets the backoff and the recorded
	// batch and renews the lease until until.
	OutboxDelivered(ctx context.Context, kind, dest, owner string, upToSeq, until int64) (bool, error)
	// OutboxHoldBatch records the batch about to be attempted: the items up to upToSeq.
	OutboxHoldBatch(ctx context.Context, kind, dest, owner string, upToSeq int64) (bool, error)
	// OutboxFailed records a failed attempt (failures+1, no delivery before retryTS) and
	// releases the lease.
	OutboxFailed(ctx context.Context, kind, dest, owner string, retryTS int64, lastErr string) (bool, error)
	// OutboxDrop removes the given items (a compaction of the backlog).
	OutboxDrop(ctx context.Context, kind, dest, owner string, seqs []int64) (bool, error)
	// OutboxRelease gives the lease up and reports whether items are still queued.
	OutboxRelease(ctx context.Context, kind, dest, owner string) (pending bool, err error)
	// OutboxClearLeases frees every lease (a single-process database, at start-up).
	OutboxClearLeases(ctx context.Context) error
	// OutboxRetryNow ends a destination's backoff (its failures are kept), reporting
	// whether it was backing off.
	OutboxRetryNow(ctx context.Context, kind, dest string, now int64) (bool, error)
}

// Store is the whole storage interface.
type Store interface {
	Accounts
	Reader

	// Write runs fn in one transaction; fn's error rolls back everything it did.
	Write(ctx context.Context, fn func(Tx) error) error
	// MaxPos is the highest committed stream position.
	MaxPos(ctx context.Context) (stream.Pos, error)
	// Shared reports whether other processes may write to the same database (PostgreSQL).
	Shared() bool
	// Subscribe delivers notifications sent with Tx.Notify by any process sharing the
	// database, until ctx ends. onReconnect runs after a (re)connection, when notifications
	// may have been missed. A database that cannot notify (SQLite: one process) returns
	// ErrNotSupported at once.
	Subscribe(ctx context.Context, channels []string, onNotify func(channel, payload string), onReconnect func()) error
	Close() error
}

// ErrNotSupported is returned for what the database engine cannot do.
var ErrNotSupported = errors.New("not supported by this database")

// StreamBatch is every stream item with a position in a range, across all rooms and users;
// a node reads it to catch up on what other nodes wrote. Typing, receipts, presence and
// account data hold only their latest value per key, which is what readers need.
type StreamBatch struct {
	Events []Event
	// State is, per position, the events that became their room's current state there
	// (an event with an empty ID: the key left the state).
	State       map[stream.Pos][]Event
	Receipts    []Receipt
	Typing      []Typing
	Presence    []Presence
	AccountData []AccountData
	DeviceLists []DeviceListChange
	// ToDevice holds the position, user and device of each waiting message (no content).
	ToDevice []ToDeviceMessage
	Push     []PushOutcome
}

// Accounts covers users, devices, tokens and UIA sessions.
type Accounts interface {
	User(ctx context.Context, userID string) (User, error)
	TokenOwner(ctx context.Context, tokenHash string) (TokenOwner, error)
	Devices(ctx context.Context, userID string) ([]Device, error)
	Device(ctx context.Context, userID, deviceID string) (Device, error)
	UIASession(ctx context.Context, sessionID string) (UIASession, error)
	Filter(ctx context.Context, userID string, filterID int64) ([]byte, error)
}

// Reader covers the read side of rooms, events and the ephemeral streams.
type Reader interface {
	E2EEReader
	AdminReader
	SearchReader
	KeyReader
	MediaReader
	Room(ctx context.Context, roomID string) (Room, error)
	EventByID(ctx context.Context, eventID string) (Event, error)
	EventsByIDs(ctx context.Context, eventIDs []string) ([]Event, error)
	// RoomEvents returns the events of a room with from < pos <= to, ascending when
	// forward, else descending (pos <= from, pos > to), at most limit of them.
	RoomEvents(ctx context.Context, roomID string, from, to stream.Pos, forward bool, limit int) ([]Event, error)
	// CurrentState returns the room's current state events, all of them when keys is empty.
	CurrentState(ctx context.Context, roomID string, keys ...StateKeyOf) ([]Event, error)
	// CurrentStateOfType returns the room's current state events of one type, by state
	// key, at most limit.
	CurrentStateOfType(ctx context.Context, roomID, evType string, limit int) ([]Event, error)
	// EventsByTime returns the room's timeline events by origin_server_ts: forward, those
	// after (ts, pos) in (origin_ts, pos) order, ascending; backward, those before it,
	// descending; at most limit.
	EventsByTime(ctx context.Context, roomID string, ts int64, pos stream.Pos, forward bool, limit int) ([]Event, error)
	// StateAt returns the room's current state as it was at stream position pos (inclusive):
	// the latest state delta per key up to pos.
	StateAt(ctx context.Context, roomID string, pos stream.Pos, keys ...StateKeyOf) ([]Event, error)
	// StateChanges returns, per (type, state_key), the event that became current last with
	// from < pos <= to (keys that left the state are not reported).
	StateChanges(ctx context.Context, roomID string, from, to stream.Pos) ([]Event, error)
	// StateGroup reads a state group.
	StateGroup(ctx context.Context, groupID int64) (StateGroup, error)
	// StateIDsAt is StateAt as a map of event IDs (no events read).
	StateIDsAt(ctx context.Context, roomID string, pos stream.Pos) (map[StateKeyOf]string, error)
	// CurrentStateIDs is the room's current state as a map of event IDs.
	CurrentStateIDs(ctx context.Context, roomID string) (map[StateKeyOf]string, error)
	Member(ctx context.Context, roomID, userID string) (Member, error)
	// MembershipsOf returns the user's current memberships (all rooms it has any in).
	MembershipsOf(ctx context.Context, userID string) ([]Member, error)
	// Members returns a room's current members with the given memberships (all if none).
	Members(ctx context.Context, roomID string, memberships ...string) ([]Member, error)
	// MemberEvents returns the room's membership history: every m.room.member event as it
	// became current, ascending, with Pos the position at which it did (an older event may
	// become current again through state resolution) and PrevMembership the membership it
	// replaced in the current state.
	MemberEvents(ctx context.Context, roomID string) ([]Event, error)
	// UserMemberEvents is MemberEvents for one user.
	UserMemberEvents(ctx context.Context, roomID, userID string) ([]Event, error)
	// NextStateEvent returns the first state event of the key after pos: the one that
	// replaced the state event at pos (ErrNotFound if none did).
	NextStateEvent(ctx context.Context, roomID string, key StateKeyOf, after stream.Pos) (Event, error)
	// SharesRoom reports whether two users are both joined to some room.
	SharesRoom(ctx context.Context, userA, userB string) (bool, error)
	// GuestMembers returns the local guest accounts joined to or invited into a room.
	GuestMembers(ctx context.Context, roomID string) ([]string, error)
	// MemberCounts returns joined and invited member counts.
	MemberCounts(ctx context.Context, roomID string) (joined, invited int, err error)
	TxnEvent(ctx context.Context, userID, deviceID, roomID, txnID string) (string, error)

	AliasRoom(ctx context.Context, alias string) (Alias, error)
	RoomAliases(ctx context.Context, roomID string) ([]string, error)
	// PublishedRooms returns every room of the directory lists chosen, in one query.
	PublishedRooms(ctx context.Context, lists DirectoryLists) ([]PublishedRoom, error)

	Receipts(ctx context.Context, roomID string, from, to stream.Pos) ([]Receipt, error)
	ReceiptsForRooms(ctx context.Context, roomIDs []string, from, to stream.Pos) ([]Receipt, error)
	UserReceipt(ctx context.Context, roomID, userID, receiptType string) (Receipt, error)
	TypingIn(ctx context.Context, roomID string) (Typing, error)
	Presence(ctx context.Context, userID string) (Presence, error)
	PresenceFor(ctx context.Context, userIDs []string, from, to stream.Pos) ([]Presence, error)
	AccountData(ctx context.Context, userID string, from, to stream.Pos) ([]AccountData, error)
	AccountDataItem(ctx context.Context, userID, roomID, dataType string) (AccountData, error)
	// AccountDataOfUsers returns one account-data item of each of the users that has it.
	AccountDataOfUsers(ctx context.Context, userIDs []string, roomID, dataType string) ([]AccountData, error)
	// StreamRange returns every stream item with from < pos <= to.
	StreamRange(ctx context.Context, from, to stream.Pos) (StreamBatch, error)
	OutboxReader
	PushReader
	RelationReader
}

// RelationReader reads event relations and threads.
type RelationReader interface {
	// RelationChildren returns the children of the parents in a room by the aggregated
	// relation types (m.thread, m.replace, m.reference) with pos <= upTo, newest first, at
	// most perType of each parent and type.
	RelationChildren(ctx context.Context, roomID string, parents []string, upTo stream.Pos, perType int) ([]Relation, error)
	// Relations returns one event's children as q selects them.
	Relations(ctx context.Context, q RelationQuery) ([]Relation, error)
	// Threads returns the room's threads whose latest reply is before pos before, latest
	// first, at most limit; with a participant, only the threads whose root or a reply
	// the participant sent.
	Threads(ctx context.Context, roomID string, before stream.Pos, participant string, limit int) ([]Thread, error)
}

// Tx is the write side, valid inside Store.Write.
type Tx interface {
	Reader
	OutboxWriter
	E2EETx
	AdminTx
	KeyTx
	MediaTx
	// AfterCommit runs fn once the transaction has committed (not at all if it rolls back).
	AfterCommit(fn func())
	// LockStream serialises this transaction with every other stream writer, on every
	// process sharing the database, until it ends: room writes read the room's head and
	// current state after it, so two nodes never build on the same head.
	LockStream(ctx context.Context) error
	// NextPos takes the next stream position. It is visible to readers once committed.
	NextPos(ctx context.Context) (stream.Pos, error)
	// Notify sends a notification to Subscribe-rs when the transaction commits.
	Notify(ctx context.Context, channel, payload string) error
	NextGuestNumber(ctx context.Context) (int64, error)

	CreateUser(ctx context.Context, u User) error
	UpdatePassword(ctx context.Context, userID, hash string) error
	UpgradeGuest(ctx context.Context, userID, passwordHash string) error
	SetProfile(ctx context.Context, userID string, displayName, avatarURL *string) error
	Deactivate(ctx context.Context, userID string) error
	CreateDevice(ctx context.Context, d Device) error
	UpdateDevice(ctx context.Context, userID, deviceID string, displayName *string) error
	// DeleteDevices removes devices, their tokens and their pushers; with no ids, all of
	// the user's devices except keep.
	DeleteDevices(ctx context.Context, userID string, deviceIDs []string, keep string) ([]string, error)
	CreateToken(ctx context.Context, tokenHash, userID, deviceID string) error
	DeleteToken(ctx context.Context, tokenHash string) error
	PutUIASession(ctx context.Context, sessionID string, s UIASession) error
	DeleteUIASession(ctx context.Context, sessionID string) error
	// DeleteUserUIASessions ends every UIA session that acted for the user.
	DeleteUserUIASessions(ctx context.Context, userID string) error
	PutFilter(ctx context.Context, userID string, filter []byte) (int64, error)

	CreateRoom(ctx context.Context, r Room) error
	// SetRoomHead records the room's latest event, its forward extremities and its depth.
	SetRoomHead(ctx context.Context, roomID, headEventID string, extremities []string, depth int64) error
	SetPublished(ctx context.Context, roomID string, published bool) error
	// SetAppServiceListed lists or unlists a room in an application service's directory
	// of a third-party network.
	SetAppServiceListed(ctx context.Context, appServiceID, networkID, roomID string, listed bool) error
	InsertEvent(ctx context.Context, e *Event) error
	// SetCurrentState makes eventID the room's current state for the key as of pos (an empty
	// eventID removes the key), recording the change as a state delta.
	SetCurrentState(ctx context.Context, roomID, evType, stateKey, eventID string, pos stream.Pos) error
	// NewStateGroup stores a state group (its ID is assigned) and returns the ID.
	NewStateGroup(ctx context.Context, g StateGroup) (int64, error)
	// DeleteOutlier removes a plain outlier (before it is stored again as a timeline event).
	DeleteOutlier(ctx context.Context, eventID string) error
	// NextOutlierPos takes a position for an event kept out of the timeline.
	NextOutlierPos(ctx context.Context) (stream.Pos, error)
	SetMember(ctx context.Context, m Member) error
	SetForgotten(ctx context.Context, roomID, userID string) error
	PutTxn(ctx context.Context, userID, deviceID, roomID, txnID, eventID string) error
	// Redact replaces the target's PDU with its pruned form.
	Redact(ctx context.Context, eventID string, prunedPDU, redactedBecause []byte) error
	// SetUnsigned replaces an event's stored unsigned object (after a redaction pruned the
	// prev_content it copied).
	SetUnsigned(ctx context.Context, eventID string, unsigned []byte) error

	PutAlias(ctx context.Context, a Alias) error
	DeleteAlias(ctx context.Context, alias string) error

	PutReceipt(ctx context.Context, r Receipt) error
	PutTyping(ctx context.Context, t Typing) error
	PutPresence(ctx context.Context, p Presence) error
	PutAccountData(ctx context.Context, a AccountData) error
	// PutRelation records an event's relation and, for a thread reply, makes it its
	// thread's latest.
	PutRelation(ctx context.Context, r Relation) error
	// DeleteRelation forgets an event's relation (it was redacted) and, for a thread reply,
	// gives its thread its new latest reply, or ends the thread. ErrNotFound when the event
	// had none.
	DeleteRelation(ctx context.Context, eventID string) error
	// PutPushOutcome records what the push rules decided for an event.
	PutPushOutcome(ctx context.Context, o PushOutcome) error
	// PutPusher creates the user's pusher for (app ID, pushkey) or updates it, keeping its
	// ID and device; it returns the ID.
	PutPusher(ctx context.Context, p Pusher) (int64, error)
	// DeletePushers deletes the pushers with app ID and pushkey, of userID only, or of
	// everyone but exceptUser when userID is "", and returns the deleted ones.
	DeletePushers(ctx context.Context, appID, pushKey, userID, exceptUser string) ([]Pusher, error)
	// DeletePusherByID deletes one pusher (its gateway rejected its pushkey).
	DeletePusherByID(ctx context.Context, id int64) error
}
