// Package reports keeps users' reports of events, rooms and users for the server's
// administrators (POST /rooms/{roomId}/report[/{eventId}], POST /users/{userId}/report).
package reports

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// Config is what the service needs besides storage.
type Config struct {
	ServerName string
	// EventVisible answers nil if the session may see the event in the room, and the
	// error to give (404 M_NOT_FOUND) otherwise: the readers' own visibility rules.
	EventVisible func(ctx context.Context, s *auth.Session, roomID, eventID string) error
}

// Service stores reports.
type Service struct {
	store storage.Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
}

// New returns the reports service.
func New(store storage.Store, cfg Config, log *slog.Logger) *Service {
	return &Service{store: store, cfg: cfg, log: log, now: time.Now}
}

// maxReason bounds a room or user report's reason, in characters (as Synapse's user reports).
const maxReason = 1000

func checkReason(reason string) error {
	if utf8.RuneCountInString(reason) > maxReason {
		return mxerr.BadJSON("Reason must be less than 1000 characters")
	}
	return nil
}

// ReportEvent records a report of an event the reporter can see; any other event,
// unknown ones included, is 404 M_NOT_FOUND (as Synapse). content is the request body.
func (s *Service) ReportEvent(ctx context.Context, sess *auth.Session, roomID, eventID, reason string, content []byte) error {
	if err := s.cfg.EventVisible(ctx, sess, roomID, eventID); err != nil {
		if e, ok := mxerr.As(err); ok && e.Status == 404 {
			return mxerr.NotFound("Unable to report event: it does not exist or you aren't able to see it.")
		}
		return err
	}
	return s.put(ctx, storage.Report{Kind: storage.ReportEvent, Reporter: sess.UserID, RoomID: roomID, EventID: eventID, Reason: reason, Content: content})
}

// ReportRoom records a report of a room this server knows; the reporter need not be in it.
func (s *Service) ReportRoom(ctx context.Context, sess *auth.Session, roomID, reason string) error {
	if err := checkReason(reason); err != nil {
		return err
	}
	if _, err := s.store.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Room does not exist")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	return s.put(ctx, storage.Report{Kind: storage.ReportRoom, Reporter: sess.UserID, RoomID: roomID, Reason: reason})
}

// ReportUser records a report of a local user. Reports of remote or unknown users are
// accepted and dropped, so that the answer does not tell whether an account exists (as
// Synapse).
func (s *Service) ReportUser(ctx context.Context, sess *auth.Session, userID, reason string) error {
	if err := checkReason(reason); err != nil {
		return err
	}
	if !strings.HasPrefix(userID, "@") || !strings.Contains(userID, ":") {
		return mxerr.InvalidParam("Not a user ID: " + userID)
	}
	if !strings.HasSuffix(userID, ":"+s.cfg.ServerName) {
		return nil
	}
	if _, err := s.store.User(ctx, userID); errors.Is(err, storage.ErrNotFound) {
		return nil
	} else if err != nil {
		return mxerr.Internal(err)
	}
	return s.put(ctx, storage.Report{Kind: storage.ReportUser, Reporter: sess.UserID, TargetUser: userID, Reason: reason})
}

func (s *Service) put(ctx context.Context, r storage.Report) error {
	r.ReceivedTS = s.now().UnixMilli()
	var id int64
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		var err error
		id, err = tx.PutReport(ctx, r)
		return err
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	s.log.Info("report received", "id", id, "kind", r.Kind, "reporter", r.Reporter, "room", r.RoomID, "event", r.EventID, "user", r.TargetUser)
	return nil
}
