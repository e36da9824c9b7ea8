package notify

import (
	"context"
	"encoding/json/jsontext"
	"strconv"
	"time"

	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
)

// Notification is one entry of GET /notifications.
type Notification struct {
	Actions jsontext.Value `json:"actions"`
	Event   jsontext.Value `json:"event"`
	// ProfileTag is always given (sytest reads it), and empty: Porthole has no per-device
	// rule sets.
	ProfileTag string `json:"profile_tag"`
	Read       bool   `json:"read"`
	RoomID     string `json:"room_id"`
	TS         int64  `json:"ts"`
}

// NotificationsPage is the body of GET /notifications.
type NotificationsPage struct {
	NextToken     string         `json:"next_token,omitempty"`
	Notifications []Notification `json:"notifications"`
}

// Limits of GET /notifications.
const (
	DefaultNotificationsLimit = 50
	MaxNotificationsLimit     = 1000
)

// Notifications lists the events the user was notified of, newest first, before the from
// token (the next_token of an earlier page), at most limit; only "highlight" keeps the
// ones that highlighted.
func (s *Service) Notifications(ctx context.Context, userID, deviceID, from string, limit int, only string) (*NotificationsPage, error) {
	var before stream.Pos
	if from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n <= 0 {
			return nil, mxerr.InvalidParam("Unknown 'from' token")
		}
		before = stream.Pos(n)
	}
	ns, err := s.store.Notifications(ctx, userID, before, limit, only == "highlight")
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	page := &NotificationsPage{Notifications: []Notification{}}
	if len(ns) == 0 {
		return page, nil
	}
	evs, err := s.eventsOf(ctx, ns)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	reads, err := s.readPoints(ctx, userID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	now := time.Now().UnixMilli()
	for _, n := range ns {
		e := evs[n.Pos]
		if e == nil {
			continue
		}
		page.Notifications = append(page.Notifications, Notification{
			Actions: jsontext.Value(n.Actions),
			Event:   clientevent.Encode(e).JSON(now, "", clientevent.Reader{UserID: userID, DeviceID: deviceID}),
			Read:    reads.read(n.RoomID, n.ThreadID, n.Pos),
			RoomID:  n.RoomID,
			TS:      n.TS,
		})
	}
	if len(ns) == limit {
		page.NextToken = strconv.FormatInt(int64(ns[len(ns)-1].Pos), 10)
	}
	return page, nil
}

// eventsOf loads the events of notifications.
func (s *Service) eventsOf(ctx context.Context, ns []storage.Notification) (map[stream.Pos]*storage.Event, error) {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.EventID
	}
	evs, err := s.store.EventsByIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[stream.Pos]*storage.Event, len(evs))
	for i := range evs {
		out[evs[i].Pos] = &evs[i]
	}
	return out, nil
}

// userReads is a user's receipts by room and thread ("" unthreaded, "main" the main
// timeline).
type userReads map[string]map[string]stream.Pos

func (s *Service) readPoints(ctx context.Context, userID string) (userReads, error) {
	rs, err := s.store.UserReceipts(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := userReads{}
	for _, r := range rs {
		if out[r.RoomID] == nil {
			out[r.RoomID] = map[string]stream.Pos{}
		}
		out[r.RoomID][r.ThreadID] = max(out[r.RoomID][r.ThreadID], r.EventPos)
	}
	return out, nil
}

// read reports whether a receipt covers the event at pos of thread ("" main).
func (u userReads) read(roomID, thread string, pos stream.Pos) bool {
	room := u[roomID]
	if room == nil {
		return false
	}
	if thread == "" {
		thread = live.MainThread
	}
	return pos <= room[""] || pos <= room[thread]
}
