// Package e2ee is the server side of end-to-end encryption: device, one-time, fallback and
// cross-signing keys with their signatures, to-device messages and server-side key
// backups. Changes that clients learn of through /sync (device-list changes, to-device
// messages) take stream positions and are published through the live hub; the syncer reads
// them back.
//
// Remote users' keys and devices need federation, which Porthole does not speak yet: they
// appear in failures, and to-device messages for them are dropped with a log line.
package e2ee

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Limits on what one caller can make the server hold or do. SECURITY.md lists them.
const (
	// MaxOneTimeKeysPerUpload and MaxOneTimeKeysPerDevice bound one-time keys.
	MaxOneTimeKeysPerUpload = 1000
	MaxOneTimeKeysPerDevice = 10000
	// MaxKeyJSON bounds one one-time, fallback or cross-signing key object.
	MaxKeyJSON = 4 << 10
	// MaxKeyID bounds key and device IDs in uploads.
	MaxKeyID = 255
	// MaxQueryUsers bounds the users of one /keys/query; MaxClaimDevices the devices of one
	// /keys/claim.
	MaxQueryUsers   = 1000
	MaxClaimDevices = 10000
	// MaxSignatureUploads bounds the keys of one /keys/signatures/upload.
	MaxSignatureUploads = 1000
	// MaxToDeviceBody bounds a /sendToDevice body, MaxToDeviceMessage one message in it and
	// MaxToDeviceMessages the messages one request makes (after "*" is expanded).
	MaxToDeviceBody     = 4 << 20
	MaxToDeviceMessage  = 64 << 10
	MaxToDeviceMessages = 10000
	// MaxBackupBody bounds a /room_keys/keys upload, MaxBackupSessionsPerRequest the keys in
	// it, MaxBackupSessions the keys of one backup version, MaxBackupVersions a user's live
	// backup versions.
	MaxBackupBody               = 4 << 20
	MaxBackupSessionsPerRequest = 10000
	MaxBackupSessions           = 1000000
	MaxBackupVersions           = 1000
)

// Config is what the service needs to know.
type Config struct {
	ServerName string
	// InboxLimit bounds each device's inbox of undelivered to-device messages.
	InboxLimit int
}

// Service serves the E2EE endpoints.
type Service struct {
	hub        *live.Hub
	store      storage.Store
	serverName string
	inboxLimit int
	log        *slog.Logger
}

// New returns the service.
func New(hub *live.Hub, store storage.Store, cfg Config, log *slog.Logger) *Service {
	return &Service{hub: hub, store: store, serverName: cfg.ServerName, inboxLimit: cfg.InboxLimit, log: log}
}

// serverOf returns the server part of a valid user ID, or "" for an invalid one.
func serverOf(userID string) string {
	if len(userID) > 255 {
		return ""
	}
	_, server, err := id.UserID(userID).Parse()
	if err != nil || server == "" {
		return ""
	}
	return server
}

func (s *Service) isLocal(userID string) bool { return serverOf(userID) == s.serverName }

// errInvalidUser is the answer for a user ID that does not parse.
func errInvalidUser(userID string) error {
	return mxerr.InvalidParam("Invalid user ID " + quote(userID))
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// remoteFailure is what failures carries for a server Porthole cannot reach (all of them,
// until federation exists), in Synapse's shape.
var remoteFailure = map[string]any{"status": 503, "message": "Federation is not supported by this server yet"}

// deviceListChange records that userID's devices or keys changed (onlyFor: only that user
// is told) inside a stream transaction, at pos.
func deviceListChange(ctx context.Context, tx storage.Tx, pos stream.Pos, userID, onlyFor string) (storage.DeviceListChange, error) {
	c := storage.DeviceListChange{Pos: pos, UserID: userID, OnlyFor: onlyFor}
	return c, tx.PutDeviceListChange(ctx, c)
}

// announce is the published item of device-list changes at pos; the users sharing a room
// with them are woken after the commit (wakeFor).
func announce(pos stream.Pos, changes ...storage.DeviceListChange) live.Published {
	users := make([]string, 0, len(changes))
	for _, c := range changes {
		if c.OnlyFor != "" {
			users = append(users, c.OnlyFor)
		} else {
			users = append(users, c.UserID)
		}
	}
	return live.Published{Item: live.Item{Pos: pos}, Users: users, E2EE: &live.E2EENote{DeviceLists: changes}}
}

// wakeFor wakes the /sync of everyone sharing a room with userID after a change of their
// devices committed. The change is in the hub's memory already, so a /sync that missed this
// wake still finds it on its next read.
func (s *Service) wakeFor(ctx context.Context, userID string) {
	users, err := s.hub.CoMembers(ctx, userID)
	if err != nil {
		s.log.Warn("finding users to tell of a device change", "user", userID, "err", err)
		return
	}
	keys := make([]stream.Key, len(users))
	for i, u := range users {
		keys[i] = stream.UserKey(u)
	}
	s.hub.Notifier().Wake(keys...)
}

// DeviceTx runs a transaction of the account service that creates, renames or deletes
// devices (auth.Service.DeviceTx): deleted devices lose their keys and inboxes in the same
// transaction, and the change is published to the users who share a room with the owner.
func (s *Service) DeviceTx(ctx context.Context, fn func(tx storage.Tx) (auth.DeviceChange, error)) error {
	var change auth.DeviceChange
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		var err error
		if change, err = fn(tx); err != nil || change.Empty() {
			return nil, err
		}
		if len(change.Deleted) > 0 {
			if err := tx.DeleteDeviceE2EE(ctx, change.UserID, change.Deleted); err != nil {
				return nil, err
			}
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		c, err := deviceListChange(ctx, tx, pos, change.UserID, "")
		if err != nil {
			return nil, err
		}
		return []live.Published{announce(pos, c)}, nil
	})
	if err == nil && !change.Empty() {
		s.wakeFor(ctx, change.UserID)
	}
	return err
}

// internal wraps a storage error, leaving Matrix errors as they are.
func internal(err error) error {
	if err == nil {
		return nil
	}
	var e *mxerr.Error
	if errors.As(err, &e) {
		return e
	}
	return mxerr.Internal(err)
}
