package e2ee

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"strconv"

	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// BackupAlgorithm is the one server-side key backup algorithm of the spec.
const BackupAlgorithm = "m.megolm_backup.v1.curve25519-aes-sha2"

// maxSessionData bounds one backed-up key's encrypted session_data.
const maxSessionData = 16 << 10

// BackupInfo is the answer of GET /room_keys/version.
type BackupInfo struct {
	Algorithm string         `json:"algorithm"`
	AuthData  jsontext.Value `json:"auth_data"`
	Count     int            `json:"count"`
	Etag      string         `json:"etag"`
	Version   string         `json:"version"`
}

// BackupVersionRequest is the body of POST and PUT /room_keys/version.
type BackupVersionRequest struct {
	Algorithm *string        `json:"algorithm"`
	AuthData  jsontext.Value `json:"auth_data"`
	Version   *string        `json:"version"`
}

// KeyData is one backed-up room key, as uploaded and as answered.
type KeyData struct {
	FirstMessageIndex *int64         `json:"first_message_index"`
	ForwardedCount    *int64         `json:"forwarded_count"`
	IsVerified        *bool          `json:"is_verified"`
	SessionData       jsontext.Value `json:"session_data"`
}

// KeysUpdate is the answer of the /room_keys/keys writes.
type KeysUpdate struct {
	Etag  string `json:"etag"`
	Count int    `json:"count"`
}

func errUnknownVersion() error { return mxerr.NotFound("Unknown backup version") }

// parseVersion reads a version as handed out; anything else names no backup.
func parseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != v {
		return 0, errUnknownVersion()
	}
	return n, nil
}

// checkAuthData validates a backup's algorithm and auth_data.
func checkAuthData(req BackupVersionRequest) error {
	if req.Algorithm == nil {
		return mxerr.BadJSON("algorithm is required")
	}
	if *req.Algorithm != BackupAlgorithm {
		return mxerr.InvalidParam("Unsupported backup algorithm " + quote(*req.Algorithm) + "; this server supports " + BackupAlgorithm)
	}
	if req.AuthData.Kind() != '{' {
		return mxerr.BadJSON("auth_data must be an object")
	}
	if len(req.AuthData) > MaxKeyJSON {
		return mxerr.TooLarge("auth_data is too large")
	}
	var ad struct {
		PublicKey *string `json:"public_key"`
	}
	if json.Unmarshal(req.AuthData, &ad) != nil || ad.PublicKey == nil {
		return mxerr.BadJSON("auth_data needs the backup's public_key")
	}
	return nil
}

// CreateBackup adds a new backup version, which becomes the current one.
func (s *Service) CreateBackup(ctx context.Context, userID string, req BackupVersionRequest) (string, error) {
	if err := checkAuthData(req); err != nil {
		return "", err
	}
	var version int64
	var err error
	// Two creations at once may pick the same number; the loser tries again.
	for attempt := 0; attempt < 3; attempt++ {
		err = s.store.Write(ctx, func(tx storage.Tx) error {
			n, err := tx.KeyBackupVersions(ctx, userID)
			if err != nil {
				return err
			}
			if n >= MaxBackupVersions {
				return mxerr.Forbidden("Too many backup versions (" + strconv.Itoa(MaxBackupVersions) + "); delete old ones first")
			}
			version, err = tx.CreateKeyBackup(ctx, userID, *req.Algorithm, req.AuthData)
			return err
		})
		if !errors.Is(err, storage.ErrConflict) {
			break
		}
	}
	if err != nil {
		return "", internal(err)
	}
	return strconv.FormatInt(version, 10), nil
}

// Backup describes the current backup version (version "") or the one named.
func (s *Service) Backup(ctx context.Context, userID, version string) (*BackupInfo, error) {
	var n int64
	if version != "" {
		var err error
		if n, err = parseVersion(version); err != nil {
			return nil, err
		}
	}
	b, err := s.store.KeyBackup(ctx, userID, n)
	if errors.Is(err, storage.ErrNotFound) || err == nil && b.Deleted {
		if version == "" {
			return nil, mxerr.NotFound("No current backup version")
		}
		return nil, errUnknownVersion()
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	count, err := s.store.BackupCount(ctx, userID, b.Version)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	return &BackupInfo{Algorithm: b.Algorithm, AuthData: b.AuthData, Count: count, Etag: strconv.FormatInt(b.Etag, 10), Version: strconv.FormatInt(b.Version, 10)}, nil
}

// liveBackup loads a backup version that exists and is not deleted.
func liveBackup(ctx context.Context, r storage.Reader, userID, version string) (storage.KeyBackup, error) {
	n, err := parseVersion(version)
	if err != nil {
		return storage.KeyBackup{}, err
	}
	b, err := r.KeyBackup(ctx, userID, n)
	if errors.Is(err, storage.ErrNotFound) || err == nil && b.Deleted {
		return b, errUnknownVersion()
	}
	return b, err
}

// UpdateBackup replaces a version's auth_data; its algorithm cannot change.
func (s *Service) UpdateBackup(ctx context.Context, userID, version string, req BackupVersionRequest) error {
	if req.Version != nil && *req.Version != version {
		return mxerr.InvalidParam("The version in the body does not match the path")
	}
	if req.Algorithm == nil {
		return mxerr.BadJSON("algorithm is required")
	}
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		b, err := liveBackup(ctx, tx, userID, version)
		if err != nil {
			return err
		}
		if *req.Algorithm != b.Algorithm {
			return mxerr.InvalidParam("Algorithm does not match")
		}
		if err := checkAuthData(req); err != nil {
			return err
		}
		return tx.UpdateKeyBackup(ctx, userID, b.Version, req.AuthData)
	})
	return internal(err)
}

// DeleteBackup deletes a version and its keys; deleting it again succeeds.
func (s *Service) DeleteBackup(ctx context.Context, userID, version string) error {
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		b, err := tx.KeyBackup(ctx, userID, n)
		if errors.Is(err, storage.ErrNotFound) {
			return errUnknownVersion()
		} else if err != nil || b.Deleted {
			return err
		}
		return tx.DeleteKeyBackup(ctx, userID, n)
	})
	return internal(err)
}

// checkKeyData validates one uploaded room key.
func checkKeyData(roomID, sessionID string, k KeyData) (storage.BackupSession, error) {
	if len(roomID) < 2 || roomID[0] != '!' || len(roomID) > 255 {
		return storage.BackupSession{}, mxerr.InvalidParam("Invalid room ID " + quote(roomID))
	}
	if sessionID == "" || len(sessionID) > 255 {
		return storage.BackupSession{}, mxerr.InvalidParam("Invalid session ID " + quote(sessionID))
	}
	if k.FirstMessageIndex == nil || k.ForwardedCount == nil || k.IsVerified == nil || k.SessionData.Kind() != '{' {
		return storage.BackupSession{}, mxerr.BadJSON("A key needs first_message_index, forwarded_count, is_verified and an object session_data")
	}
	if *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0 {
		return storage.BackupSession{}, mxerr.InvalidParam("first_message_index and forwarded_count must not be negative")
	}
	if len(k.SessionData) > maxSessionData {
		return storage.BackupSession{}, mxerr.TooLarge("session_data is too large")
	}
	return storage.BackupSession{RoomID: roomID, SessionID: sessionID, FirstMessageIndex: *k.FirstMessageIndex,
		ForwardedCount: *k.ForwardedCount, IsVerified: *k.IsVerified, SessionData: k.SessionData}, nil
}

// Better reports whether a newly uploaded key should replace the stored one: a verified
// key beats an unverified one, then the lower first message index wins, then the lower
// forwarded count; on a tie the stored key stays.
func Better(upload, stored storage.BackupSession) bool {
	if upload.IsVerified != stored.IsVerified {
		return upload.IsVerified
	}
	if upload.FirstMessageIndex != stored.FirstMessageIndex {
		return upload.FirstMessageIndex < stored.FirstMessageIndex
	}
	return upload.ForwardedCount < stored.ForwardedCount
}

// PutKeys stores keys in the current backup version, keeping the better of an uploaded
// and a stored key. Keys for any other version are refused with the current version.
func (s *Service) PutKeys(ctx context.Context, userID, version string, rooms map[string]map[string]KeyData) (*KeysUpdate, error) {
	var sessions []storage.BackupSession
	for roomID, byID := range rooms {
		for sessionID, k := range byID {
			bs, err := checkKeyData(roomID, sessionID, k)
			if err != nil {
				return nil, err
			}
			sessions = append(sessions, bs)
			if len(sessions) > MaxBackupSessionsPerRequest {
				return nil, mxerr.InvalidParam("At most " + strconv.Itoa(MaxBackupSessionsPerRequest) + " keys per request")
			}
		}
	}
	var out KeysUpdate
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		cur, err := tx.LockKeyBackup(ctx, userID)
		if errors.Is(err, storage.ErrNotFound) {
			return errUnknownVersion()
		} else if err != nil {
			return err
		}
		if strconv.FormatInt(cur.Version, 10) != version {
			return &mxerr.Error{Status: 403, Code: "M_WRONG_ROOM_KEYS_VERSION", Message: "Wrong backup version.",
				Extra: map[string]any{"current_version": strconv.FormatInt(cur.Version, 10)}}
		}
		stored := map[[2]string]storage.BackupSession{}
		seenRoom := map[string]bool{}
		for _, bs := range sessions {
			if seenRoom[bs.RoomID] {
				continue
			}
			seenRoom[bs.RoomID] = true
			have, err := tx.BackupSessions(ctx, userID, cur.Version, bs.RoomID, "")
			if err != nil {
				return err
			}
			for _, h := range have {
				stored[[2]string{h.RoomID, h.SessionID}] = h
			}
		}
		var keep []storage.BackupSession
		added := 0
		for _, bs := range sessions {
			old, ok := stored[[2]string{bs.RoomID, bs.SessionID}]
			if !ok {
				added++
			}
			if !ok || Better(bs, old) {
				keep = append(keep, bs)
			}
		}
		count, err := tx.BackupCount(ctx, userID, cur.Version)
		if err != nil {
			return err
		}
		if count+added > MaxBackupSessions {
			return mxerr.Forbidden("The backup holds the most keys allowed (" + strconv.Itoa(MaxBackupSessions) + ")")
		}
		etag := cur.Etag
		if len(keep) > 0 {
			if err := tx.PutBackupSessions(ctx, userID, cur.Version, keep); err != nil {
				return err
			}
			if etag, err = tx.BumpBackupEtag(ctx, userID, cur.Version); err != nil {
				return err
			}
		}
		out = KeysUpdate{Etag: strconv.FormatInt(etag, 10), Count: count + added}
		return nil
	})
	if err != nil {
		return nil, internal(err)
	}
	return &out, nil
}

func keyDataOf(bs storage.BackupSession) KeyData {
	return KeyData{FirstMessageIndex: &bs.FirstMessageIndex, ForwardedCount: &bs.ForwardedCount, IsVerified: &bs.IsVerified, SessionData: bs.SessionData}
}

// RoomKeys is the answer for a room's keys.
type RoomKeys struct {
	Sessions map[string]KeyData `json:"sessions"`
}

// Keys reads backed-up keys: one session (roomID and sessionID set), a room's, or all.
// It returns a KeyData, a RoomKeys or {"rooms": {...}} accordingly.
func (s *Service) Keys(ctx context.Context, userID, version, roomID, sessionID string) (any, error) {
	b, err := liveBackup(ctx, s.store, userID, version)
	if err != nil {
		return nil, internal(err)
	}
	got, err := s.store.BackupSessions(ctx, userID, b.Version, roomID, sessionID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if sessionID != "" {
		if len(got) == 0 {
			return nil, mxerr.NotFound("No room_keys found")
		}
		return keyDataOf(got[0]), nil
	}
	rooms := map[string]RoomKeys{}
	for _, bs := range got {
		r, ok := rooms[bs.RoomID]
		if !ok {
			r = RoomKeys{Sessions: map[string]KeyData{}}
			rooms[bs.RoomID] = r
		}
		r.Sessions[bs.SessionID] = keyDataOf(bs)
	}
	if roomID != "" {
		if r, ok := rooms[roomID]; ok {
			return r, nil
		}
		return RoomKeys{Sessions: map[string]KeyData{}}, nil
	}
	return map[string]any{"rooms": rooms}, nil
}

// DeleteKeys removes backed-up keys of a version as Keys selects them.
func (s *Service) DeleteKeys(ctx context.Context, userID, version, roomID, sessionID string) (*KeysUpdate, error) {
	var out KeysUpdate
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		b, err := liveBackup(ctx, tx, userID, version)
		if err != nil {
			return err
		}
		n, err := tx.DeleteBackupSessions(ctx, userID, b.Version, roomID, sessionID)
		if err != nil {
			return err
		}
		etag := b.Etag
		if n > 0 {
			if etag, err = tx.BumpBackupEtag(ctx, userID, b.Version); err != nil {
				return err
			}
		}
		count, err := tx.BackupCount(ctx, userID, b.Version)
		out = KeysUpdate{Etag: strconv.FormatInt(etag, 10), Count: count}
		return err
	})
	if err != nil {
		return nil, internal(err)
	}
	return &out, nil
}
