package storage

import (
	"context"

	"porthole/internal/stream"
)

// DeviceKeys is a device's identity keys as the device signed them (without unsigned).
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	KeyJSON     []byte
	DisplayName *string
}

// OneTimeKey is a one-time or fallback key: ID is "algorithm:key_id", JSON the key (a JSON
// string or a signed object).
type OneTimeKey struct {
	ID   string
	JSON []byte
}

// FallbackKey is a device's fallback key for one algorithm.
type FallbackKey struct {
	Algorithm string
	OneTimeKey
	Used bool
}

// Cross-signing key usages.
const (
	MasterKey      = "master"
	SelfSigningKey = "self_signing"
	UserSigningKey = "user_signing"
)

// CrossSigningKey is one of a user's cross-signing keys; KeyID is its public key.
type CrossSigningKey struct {
	UserID  string
	Usage   string
	KeyID   string
	KeyJSON []byte
}

// KeySignature is a signature uploaded apart from the key it signs: TargetKeyID is a device
// ID or a master key's public key, SignerKeyID a full key ID ("ed25519:...").
type KeySignature struct {
	TargetUserID string
	TargetKeyID  string
	SignerUserID string
	SignerKeyID  string
	Signature    string
}

// DeviceListChange says UserID's devices or keys changed at Pos. OnlyFor, when set, is the
// one user who is told (their own user-signing key, or their signature on UserID's key).
type DeviceListChange struct {
	Pos     stream.Pos
	UserID  string
	OnlyFor string
}

// ToDeviceMessage is a message in a device's inbox.
type ToDeviceMessage struct {
	Pos      stream.Pos
	UserID   string
	DeviceID string
	Sender   string
	Type     string
	Content  []byte
}

// KeyBackup is one version of a user's server-side key backup.
type KeyBackup struct {
	UserID    string
	Version   int64
	Algorithm string
	AuthData  []byte
	Etag      int64
	Deleted   bool
}

// BackupSession is one backed-up room key.
type BackupSession struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       []byte
}

// E2EEReader is the read side of end-to-end encryption.
type E2EEReader interface {
	// Devices is Accounts.Devices, also inside a transaction (targets of to-device messages).
	Devices(ctx context.Context, userID string) ([]Device, error)
	// DeviceKeys returns the identity keys of the users' existing devices.
	DeviceKeys(ctx context.Context, userIDs []string) ([]DeviceKeys, error)
	// OneTimeKeyCounts counts the device's unclaimed one-time keys per algorithm.
	OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error)
	// OneTimeKeysByID returns the stored JSON of those of the device's one-time keys with
	// the given IDs ("algorithm:key_id") that exist.
	OneTimeKeysByID(ctx context.Context, userID, deviceID string, ids []string) (map[string][]byte, error)
	FallbackKeys(ctx context.Context, userID, deviceID string) ([]FallbackKey, error)
	CrossSigningKeys(ctx context.Context, userIDs []string) ([]CrossSigningKey, error)
	// KeySignatures returns the uploaded signatures on the users' keys.
	KeySignatures(ctx context.Context, targetUserIDs []string) ([]KeySignature, error)
	// DeviceListChanges returns the latest change per (user, only_for) with from < pos <= to.
	DeviceListChanges(ctx context.Context, from, to stream.Pos) ([]DeviceListChange, error)
	// ToDeviceMessages returns a device's messages with after < pos <= upTo, oldest first.
	ToDeviceMessages(ctx context.Context, userID, deviceID string, after, upTo stream.Pos, limit int) ([]ToDeviceMessage, error)
	// ToDeviceHeads returns, per device of the user with messages waiting, the newest one's position.
	ToDeviceHeads(ctx context.Context, userID string) (map[string]stream.Pos, error)
	// ToDeviceCounts counts the waiting messages of the user's given devices.
	ToDeviceCounts(ctx context.Context, userID string, deviceIDs []string) (map[string]int, error)
	// KeyBackup returns a backup version (deleted ones too); version 0 is the newest one
	// not deleted. ErrNotFound when there is none.
	KeyBackup(ctx context.Context, userID string, version int64) (KeyBackup, error)
	// KeyBackupVersions counts the user's backup versions that are not deleted.
	KeyBackupVersions(ctx context.Context, userID string) (int, error)
	// BackupSessions returns the backed-up keys of a version: all of them, a room's ("" for
	// all rooms), or one session ("" for all sessions).
	BackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]BackupSession, error)
	BackupCount(ctx context.Context, userID string, version int64) (int, error)
}

// E2EETx is the write side of end-to-end encryption.
type E2EETx interface {
	PutDeviceKeys(ctx context.Context, userID, deviceID string, keyJSON []byte) error
	// AddOneTimeKeys stores new one-time keys; they are claimed after those already stored.
	AddOneTimeKeys(ctx context.Context, userID, deviceID string, keys []OneTimeKey) error
	// ClaimOneTimeKey removes and returns the device's oldest one-time key of the algorithm
	// (ErrNotFound when there is none). Concurrent claims never return the same key.
	ClaimOneTimeKey(ctx context.Context, userID, deviceID, algorithm string) (OneTimeKey, error)
	// PutFallbackKey replaces the device's fallback key of the algorithm (unused again).
	PutFallbackKey(ctx context.Context, userID, deviceID string, k FallbackKey) error
	// ClaimFallbackKey marks the device's fallback key of the algorithm used and returns it.
	ClaimFallbackKey(ctx context.Context, userID, deviceID, algorithm string) (OneTimeKey, error)
	// DeleteDeviceE2EE removes everything kept for the devices: keys, signatures on them,
	// their inboxes and their to-device transaction IDs.
	DeleteDeviceE2EE(ctx context.Context, userID string, deviceIDs []string) error
	PutCrossSigningKey(ctx context.Context, k CrossSigningKey) error
	PutKeySignatures(ctx context.Context, sigs []KeySignature) error
	// DeleteKeySignatures removes the uploaded signatures on one key (a device's keys that
	// changed: the signatures were of the old ones).
	DeleteKeySignatures(ctx context.Context, targetUserID, targetKeyID string) error
	// LockKeyBackup returns the user's current backup version (the newest not deleted),
	// locked against concurrent changes until the transaction ends; ErrNotFound if none.
	LockKeyBackup(ctx context.Context, userID string) (KeyBackup, error)
	PutDeviceListChange(ctx context.Context, c DeviceListChange) error
	PutToDevice(ctx context.Context, msgs []ToDeviceMessage) error
	// PutToDeviceTxn records a to-device transaction ID; ErrConflict if it was seen.
	PutToDeviceTxn(ctx context.Context, userID, deviceID, txnID string) error
	// DeleteToDevice removes a device's messages with pos <= upTo.
	DeleteToDevice(ctx context.Context, userID, deviceID string, upTo stream.Pos) error
	// CreateKeyBackup adds a version numbered after every earlier one, deleted ones too.
	CreateKeyBackup(ctx context.Context, userID, algorithm string, authData []byte) (int64, error)
	UpdateKeyBackup(ctx context.Context, userID string, version int64, authData []byte) error
	// DeleteKeyBackup marks a version deleted and removes its keys.
	DeleteKeyBackup(ctx context.Context, userID string, version int64) error
	PutBackupSessions(ctx context.Context, userID string, version int64, sessions []BackupSession) error
	// DeleteBackupSessions removes keys as BackupSessions selects them; it returns how many.
	DeleteBackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) (int64, error)
	// BumpBackupEtag moves a version's etag on and returns it.
	BumpBackupEtag(ctx context.Context, userID string, version int64) (int64, error)
}
