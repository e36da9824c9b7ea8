package sqlstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"porthole/internal/storage"
)

// Shared is true for PostgreSQL, which several Porthole processes may share.
func (s *Store) Shared() bool { return s.dialect == postgresDialect }

// Subscribe listens on PostgreSQL channels with a dedicated connection, reconnecting with
// a growing pause after failures.
func (s *Store) Subscribe(ctx context.Context, channels []string, onNotify func(channel, payload string), onReconnect func()) error {
	if s.dialect != postgresDialect {
		return storage.ErrNotSupported
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, channels, onNotify, onReconnect)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.onSubscribeError(err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (s *Store) listenOnce(ctx context.Context, channels []string, onNotify func(channel, payload string), onReconnect func()) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch + s.channelSuffix}.Sanitize()); err != nil {
			return err
		}
	}
	// Anything sent while we were not listening is found by the catch-up this triggers.
	onReconnect()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		onNotify(strings.TrimSuffix(n.Channel, s.channelSuffix), n.Payload)
	}
}
