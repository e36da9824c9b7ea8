package syncer

import (
	"context"
	"errors"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// JoinedRooms lists the rooms the user is joined to, from memory.
func (sy *Syncer) JoinedRooms(ctx context.Context, sess *auth.Session) ([]string, error) {
	ms, err := sy.hub.Memberships(ctx, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	ids := []string{}
	for _, m := range ms {
		if m.Membership == visibility.Join {
			ids = append(ids, m.RoomID)
		}
	}
	return ids, nil
}

// RoomAliases lists a room's local aliases to those who may read the room.
func (sy *Syncer) RoomAliases(ctx context.Context, sess *auth.Session, roomID string) ([]string, error) {
	if _, err := sy.access(ctx, sess, roomID); err != nil {
		return nil, err
	}
	aliases, err := sy.store.RoomAliases(ctx, roomID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if aliases == nil {
		aliases = []string{}
	}
	return aliases, nil
}

// StoredFilter returns a filter the user saved (404 M_NOT_FOUND if there is none).
func (sy *Syncer) StoredFilter(ctx context.Context, userID string, id int64) ([]byte, error) {
	f, err := sy.store.Filter(ctx, userID, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, mxerr.NotFound("No such filter")
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	return f, nil
}

// SaveFilter stores a (validated) filter for the user and returns its ID.
func (sy *Syncer) SaveFilter(ctx context.Context, userID string, filter []byte) (int64, error) {
	var id int64
	err := sy.store.Write(ctx, func(tx storage.Tx) error {
		var err error
		id, err = tx.PutFilter(ctx, userID, filter)
		return err
	})
	if err != nil {
		return 0, mxerr.Internal(err)
	}
	return id, nil
}
