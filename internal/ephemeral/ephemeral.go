// Package ephemeral writes the non-event streams: typing, receipts, read markers, presence
// and account data (with tags). Each change takes a stream position and is published
// through the live hub, so /sync and /events see it like any room event.
package ephemeral

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// Service writes ephemeral and per-user data.
type Service struct {
	hub   *live.Hub
	store storage.Store
	log   *slog.Logger

	mu     sync.Mutex
	typing map[typingKey]*time.Timer
	closed bool

	onReceipt func(ctx context.Context, userID string) // see SetReceiptHook
}

// SetReceiptHook makes fn run after a user's read receipt moved (push gateways are sent the
// new badge). Set it before serving.
func (s *Service) SetReceiptHook(fn func(ctx context.Context, userID string)) { s.onReceipt = fn }

type typingKey struct{ room, user string }

// New returns the service.
func New(hub *live.Hub, store storage.Store, log *slog.Logger) *Service {
	return &Service{hub: hub, store: store, log: log, typing: make(map[typingKey]*time.Timer)}
}

// Close stops typing timers.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, t := range s.typing {
		t.Stop()
	}
}

func (s *Service) requireJoined(ctx context.Context, roomID, userID string) error {
	m, err := s.store.Member(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && m.Membership != visibility.Join) {
		return mxerr.Forbidden("You are not in this room")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	return nil
}

// MaxTypingTimeout caps how long a typing notification lasts without renewal.
const MaxTypingTimeout = 120 * time.Second

// SetTyping starts (for timeout) or stops a user's typing notification in a room.
func (s *Service) SetTyping(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration) error {
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return err
	}
	key := typingKey{roomID, userID}
	s.mu.Lock()
	if t, ok := s.typing[key]; ok {
		t.Stop()
		delete(s.typing, key)
	}
	if typing && !s.closed {
		timeout = min(max(timeout, time.Second), MaxTypingTimeout)
		s.typing[key] = time.AfterFunc(timeout, func() { s.expireTyping(key) })
	}
	s.mu.Unlock()
	return s.updateTyping(ctx, roomID, userID, typing)
}

func (s *Service) expireTyping(key typingKey) {
	s.mu.Lock()
	delete(s.typing, key)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.updateTyping(ctx, key.room, key.user, false); err != nil {
		s.log.Warn("expiring typing notification", "room", key.room, "user", key.user, "err", err)
	}
}

// updateTyping changes the stored typing set; an unchanged set takes no position.
func (s *Service) updateTyping(ctx context.Context, roomID, userID string, typing bool) error {
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		cur, err := tx.TypingIn(ctx, roomID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		users := slices.DeleteFunc(slices.Clone(cur.UserIDs), func(u string) bool { return u == userID })
		if typing {
			users = append(users, userID)
			slices.Sort(users)
		}
		if slices.Equal(users, cur.UserIDs) {
			return nil, nil
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		t := storage.Typing{RoomID: roomID, Pos: pos, UserIDs: users}
		if err := tx.PutTyping(ctx, t); err != nil {
			return nil, err
		}
		return []live.Published{{RoomID: roomID, Item: live.TypingItem(t)}}, nil
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	return nil
}

// Receipt types clients may send.
const (
	ReceiptRead        = "m.read"
	ReceiptReadPrivate = "m.read.private"
	FullyRead          = "m.fully_read"
)

// PutReceipt stores a read receipt (m.read or m.read.private) on an event of the room.
func (s *Service) PutReceipt(ctx context.Context, roomID, userID, receiptType, eventID, threadID string) error {
	if receiptType != ReceiptRead && receiptType != ReceiptReadPrivate {
		return mxerr.InvalidParam("Unknown receipt type " + receiptType)
	}
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return err
	}
	target, err := s.eventInRoom(ctx, roomID, eventID)
	if err != nil {
		return err
	}
	if threadID != "" {
		if err := s.checkReceiptThread(ctx, target, threadID); err != nil {
			return err
		}
	}
	_, err = s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		// Receipts only move forwards: one for an older event than the current one is
		// accepted and ignored (as in Synapse).
		if cur, err := tx.UserReceipt(ctx, roomID, userID, receiptType); err == nil && cur.ThreadID == threadID {
			older, err := tx.EventsByIDs(ctx, []string{cur.EventID, eventID})
			if err != nil {
				return nil, err
			}
			if len(older) == 2 && older[1].ID == cur.EventID {
				return nil, nil
			}
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		r := storage.Receipt{Pos: pos, RoomID: roomID, Type: receiptType, UserID: userID, ThreadID: threadID, EventID: eventID, EventPos: target.Pos, TS: time.Now().UnixMilli()}
		if err := tx.PutReceipt(ctx, r); err != nil {
			return nil, err
		}
		return []live.Published{{RoomID: roomID, Item: live.ReceiptItem(r)}}, nil
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	if s.onReceipt != nil {
		s.onReceipt(ctx, userID)
	}
	return nil
}

// eventInRoom loads an event of the room (404 for events of other rooms).
func (s *Service) eventInRoom(ctx context.Context, roomID, eventID string) (storage.Event, error) {
	ev, err := s.store.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && ev.RoomID != roomID) {
		return ev, mxerr.NotFound("Unknown event " + eventID)
	} else if err != nil {
		return ev, mxerr.Internal(err)
	}
	return ev, nil
}

// SetFullyRead moves the user's m.fully_read marker (room account data).
func (s *Service) SetFullyRead(ctx context.Context, roomID, userID, eventID string) error {
	if err := s.requireJoined(ctx, roomID, userID); err != nil {
		return err
	}
	if _, err := s.eventInRoom(ctx, roomID, eventID); err != nil {
		return err
	}
	content, _ := json.Marshal(map[string]string{"event_id": eventID})
	return s.putAccountData(ctx, userID, roomID, FullyRead, content)
}

// Presence states.
var presenceStates = []string{"online", "offline", "unavailable", "busy"}

// SetPresence stores a user's presence. An unchanged state and message takes no
// position: only last-active time moves.
func (s *Service) SetPresence(ctx context.Context, userID, state string, statusMsg *string, fromSync bool) error {
	if !slices.Contains(presenceStates, state) {
		return mxerr.InvalidParam("Unknown presence state " + state)
	}
	if statusMsg != nil && len(*statusMsg) > 1024 {
		return mxerr.InvalidParam("status_msg too long")
	}
	now := time.Now().UnixMilli()
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		cur, err := tx.Presence(ctx, userID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		if fromSync {
			// /sync's set_presence keeps the status message.
			statusMsg = cur.StatusMsg
		}
		same := err == nil && cur.State == state && equalPtr(cur.StatusMsg, statusMsg)
		if same && now-cur.LastActiveTS < 60_000 {
			return nil, nil
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		p := storage.Presence{UserID: userID, State: state, StatusMsg: statusMsg, LastActiveTS: now, CurrentlyActive: state == "online", Pos: pos}
		if err := tx.PutPresence(ctx, p); err != nil {
			return nil, err
		}
		rooms, err := tx.MembershipsOf(ctx, userID)
		if err != nil {
			return nil, err
		}
		pubs := []live.Published{{Item: live.PresenceItem(p), Users: []string{userID}}}
		for _, m := range rooms {
			if m.Membership == visibility.Join {
				pubs = append(pubs, live.Published{RoomID: m.RoomID, Item: live.PresenceItem(p)})
			}
		}
		return pubs, nil
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	return nil
}

func equalPtr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// GetPresence returns userID's presence as viewer may see it: their own, or that of a user
// they share a room with (as Synapse); anyone else's is 403, unknown users included, so
// the answer says nothing about who exists. Users that never set one are offline.
func (s *Service) GetPresence(ctx context.Context, viewer, userID string) (storage.Presence, error) {
	if viewer != userID {
		shared, err := s.store.SharesRoom(ctx, viewer, userID)
		if err != nil {
			return storage.Presence{}, mxerr.Internal(err)
		}
		if !shared {
			return storage.Presence{}, mxerr.Forbidden("You are not allowed to see their presence")
		}
	}
	p, err := s.store.Presence(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		if _, err := s.store.User(ctx, userID); errors.Is(err, storage.ErrNotFound) {
			return p, mxerr.NotFound("Unknown user")
		} else if err != nil {
			return p, mxerr.Internal(err)
		}
		return storage.Presence{UserID: userID, State: "offline"}, nil
	} else if err != nil {
		return p, mxerr.Internal(err)
	}
	return p, nil
}

// PutAccountData stores global (roomID "") or per-room account data.
func (s *Service) PutAccountData(ctx context.Context, userID, roomID, dataType string, content jsontext.Value) error {
	if dataType == "" || len(dataType) > 255 {
		return mxerr.InvalidParam("Invalid account data type")
	}
	if dataType == FullyRead || dataType == "m.push_rules" {
		return &mxerr.Error{Status: 405, Code: "M_BAD_JSON", Message: "Cannot set " + dataType + " through this API"}
	}
	if content.Kind() != '{' {
		return mxerr.BadJSON("Account data content must be a JSON object")
	}
	if roomID != "" {
		if _, err := s.store.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
			return mxerr.NotFound("Unknown room")
		} else if err != nil {
			return mxerr.Internal(err)
		}
	}
	return s.putAccountData(ctx, userID, roomID, dataType, content)
}

func (s *Service) putAccountData(ctx context.Context, userID, roomID, dataType string, content []byte) error {
	return s.UpdateAccountData(ctx, userID, roomID, dataType, func([]byte) ([]byte, error) { return content, nil })
}

// UpdateAccountData replaces an account-data item with what change makes of its current
// content (nil when there is none). It reads and writes in one stream transaction, so two
// changes at once, on any node, never lose one another.
func (s *Service) UpdateAccountData(ctx context.Context, userID, roomID, dataType string, change func(old []byte) ([]byte, error)) error {
	var changeErr error
	_, err := s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		var old []byte
		if cur, err := tx.AccountDataItem(ctx, userID, roomID, dataType); err == nil {
			old = cur.Content
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		content, err := change(old)
		if err != nil {
			changeErr = err
			return nil, err
		}
		pos, err := tx.NextPos(ctx)
		if err != nil {
			return nil, err
		}
		a := storage.AccountData{UserID: userID, RoomID: roomID, Type: dataType, Content: content, Pos: pos}
		if err := tx.PutAccountData(ctx, a); err != nil {
			return nil, err
		}
		return []live.Published{{Item: live.Item{Pos: pos}, Users: []string{userID}, AccountDataOf: userID, AccountDataType: dataType}}, nil
	})
	if changeErr != nil {
		return changeErr
	}
	if err != nil {
		return mxerr.Internal(err)
	}
	return nil
}

// AccountData returns one account-data item's content.
func (s *Service) AccountData(ctx context.Context, userID, roomID, dataType string) ([]byte, error) {
	a, err := s.store.AccountDataItem(ctx, userID, roomID, dataType)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, mxerr.NotFound("Account data not found")
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	return a.Content, nil
}

// Tags returns the room's m.tag content ({"tags": {...}}).
func (s *Service) Tags(ctx context.Context, userID, roomID string) (map[string]jsontext.Value, error) {
	a, err := s.store.AccountDataItem(ctx, userID, roomID, "m.tag")
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]jsontext.Value{}, nil
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	return parseTags(a.Content), nil
}

// parseTags reads the tags out of m.tag content; anything unreadable is no tags.
func parseTags(content []byte) map[string]jsontext.Value {
	var c struct {
		Tags map[string]jsontext.Value `json:"tags"`
	}
	if json.Unmarshal(content, &c) != nil || c.Tags == nil {
		return map[string]jsontext.Value{}
	}
	return c.Tags
}

// SetTag adds (content non-nil) or removes a tag on a room.
func (s *Service) SetTag(ctx context.Context, userID, roomID, tag string, content jsontext.Value) error {
	if tag == "" || len(tag) > 255 {
		return mxerr.InvalidParam("Invalid tag")
	}
	if content != nil && content.Kind() != '{' {
		return mxerr.BadJSON("Tag content must be a JSON object")
	}
	return s.UpdateAccountData(ctx, userID, roomID, "m.tag", func(old []byte) ([]byte, error) {
		tags := parseTags(old)
		if content == nil {
			delete(tags, tag)
		} else {
			tags[tag] = content
		}
		raw, err := json.Marshal(map[string]any{"tags": tags}, json.Deterministic(true))
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		return raw, nil
	})
}
