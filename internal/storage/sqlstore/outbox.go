package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"porthole/internal/storage"
)

// The outbox tables: see storage.OutboxReader and storage.OutboxWriter.

func (r reader) OutboxItems(ctx context.Context, kind, dest string, limit int) ([]storage.OutboxItem, error) {
	rows, err := r.query(ctx, `SELECT kind, destination, seq, payload, created_ts FROM outbox_items
		WHERE kind = $1 AND destination = $2 ORDER BY seq LIMIT $3`, kind, dest, limit)
	return collect(rows, err, func(rows *sql.Rows) (storage.OutboxItem, error) {
		var it storage.OutboxItem
		err := rows.Scan(&it.Kind, &it.Destination, &it.Seq, &it.Payload, &it.CreatedTS)
		return it, err
	})
}

const outboxDestCols = `kind, destination, failures, retry_ts, lease_owner, lease_until, last_error, batch_end`

func scanOutboxDest(row interface{ Scan(...any) error }) (storage.OutboxDestination, error) {
	var d storage.OutboxDestination
	err := row.Scan(&d.Kind, &d.Destination, &d.Failures, &d.RetryTS, &d.LeaseOwner, &d.LeaseUntil, &d.LastError, &d.BatchEnd)
	return d, err
}

func (r reader) OutboxDestination(ctx context.Context, kind, dest string) (storage.OutboxDestination, error) {
	d, err := scanOutboxDest(r.row(ctx, `SELECT `+outboxDestCols+` FROM outbox_destinations WHERE kind = $1 AND destination = $2`, kind, dest))
	return d, translate(err)
}

func (r reader) OutboxCount(ctx context.Context, kind, dest string) (int64, error) {
	var n int64
	err := r.row(ctx, `SELECT COUNT(*) FROM outbox_items WHERE kind = $1 AND destination = $2`, kind, dest).Scan(&n)
	return n, translate(err)
}

func (r reader) OutboxDue(ctx context.Context, now int64, limit int) ([]storage.OutboxDestination, error) {
	rows, err := r.query(ctx, `SELECT `+outboxDestCols+` FROM outbox_destinations d
		WHERE d.retry_ts <= $1 AND (d.lease_owner = '' OR d.lease_until < $1)
		AND EXISTS (SELECT 1 FROM outbox_items i WHERE i.kind = d.kind AND i.destination = d.destination)
		ORDER BY d.retry_ts LIMIT $2`, now, limit)
	return collect(rows, err, func(rows *sql.Rows) (storage.OutboxDestination, error) { return scanOutboxDest(rows) })
}

func (r reader) OutboxNextRetry(ctx context.Context, now int64) (int64, error) {
	var next sql.NullInt64
	err := r.row(ctx, `SELECT MIN(d.retry_ts) FROM outbox_destinations d WHERE d.retry_ts > $1
		AND EXISTS (SELECT 1 FROM outbox_items i WHERE i.kind = d.kind AND i.destination = d.destination)`, now).Scan(&next)
	return next.Int64, translate(err)
}

func (t *txn) OutboxEnqueue(ctx context.Context, kind, dest string, payload []byte, now int64) error {
	// Taking the position updates the destination's row, which holds its lock until commit:
	// two writers for one destination commit their items in the order of their positions.
	var seq int64
	err := t.row(ctx, `INSERT INTO outbox_destinations (kind, destination, next_seq) VALUES ($1, $2, 1)
		ON CONFLICT (kind, destination) DO UPDATE SET next_seq = outbox_destinations.next_seq + 1
		RETURNING next_seq`, kind, dest).Scan(&seq)
	if err != nil {
		return translate(err)
	}
	if payload == nil {
		payload = []byte{}
	}
	_, err = t.exec(ctx, `INSERT INTO outbox_items (kind, destination, seq, payload, created_ts) VALUES ($1, $2, $3, $4, $5)`,
		kind, dest, seq, payload, now)
	return err
}

func (t *txn) OutboxPurge(ctx context.Context, kind, dest string) error {
	if _, err := t.exec(ctx, `DELETE FROM outbox_items WHERE kind = $1 AND destination = $2`, kind, dest); err != nil {
		return err
	}
	_, err := t.exec(ctx, `DELETE FROM outbox_destinations WHERE kind = $1 AND destination = $2`, kind, dest)
	return err
}

// affected reports whether a statement changed a row.
func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *txn) OutboxLease(ctx context.Context, kind, dest, owner string, now, until int64) (bool, error) {
	return affected(t.exec(ctx, `UPDATE outbox_destinations SET lease_owner = $1, lease_until = $2
		WHERE kind = $3 AND destination = $4 AND retry_ts <= $5
		AND (lease_owner = '' OR lease_owner = $1 OR lease_until < $5)`, owner, until, kind, dest, now))
}

func (t *txn) OutboxDelivered(ctx context.Context, kind, dest, owner string, upToSeq, until int64) (bool, error) {
	ok, err := affected(t.exec(ctx, `UPDATE outbox_destinations SET failures = 0, retry_ts = 0, last_error = '', batch_end = 0, lease_until = $1
		WHERE kind = $2 AND destination = $3 AND lease_owner = $4`, until, kind, dest, owner))
	if !ok || err != nil {
		return false, err
	}
	_, err = t.exec(ctx, `DELETE FROM outbox_items WHERE kind = $1 AND destination = $2 AND seq <= $3`, kind, dest, upToSeq)
	return err == nil, err
}

func (t *txn) OutboxHoldBatch(ctx context.Context, kind, dest, owner string, upToSeq int64) (bool, error) {
	return affected(t.exec(ctx, `UPDATE outbox_destinations SET batch_end = $1
		WHERE kind = $2 AND destination = $3 AND lease_owner = $4`, upToSeq, kind, dest, owner))
}

func (t *txn) OutboxFailed(ctx context.Context, kind, dest, owner string, retryTS int64, lastErr string) (bool, error) {
	if len(lastErr) > 1000 {
		lastErr = lastErr[:1000]
	}
	return affected(t.exec(ctx, `UPDATE outbox_destinations SET failures = failures + 1, retry_ts = $1, last_error = $2,
		lease_owner = '', lease_until = 0 WHERE kind = $3 AND destination = $4 AND lease_owner = $5`, retryTS, lastErr, kind, dest, owner))
}

func (t *txn) OutboxDrop(ctx context.Context, kind, dest, owner string, seqs []int64) (bool, error) {
	var held bool
	err := t.row(ctx, `SELECT lease_owner = $1 FROM outbox_destinations WHERE kind = $2 AND destination = $3`, owner, kind, dest).Scan(&held)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if !held {
		return false, nil
	}
	for start := 0; start < len(seqs); start += 500 {
		chunk := seqs[start:min(start+500, len(seqs))]
		if _, err := t.exec(ctx, `DELETE FROM outbox_items WHERE kind = $1 AND destination = $2 AND seq IN (`+inList(3, len(chunk))+`)`,
			append([]any{kind, dest}, anys(chunk)...)...); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (t *txn) OutboxRelease(ctx context.Context, kind, dest, owner string) (bool, error) {
	if _, err := t.exec(ctx, `UPDATE outbox_destinations SET lease_owner = '', lease_until = 0
		WHERE kind = $1 AND destination = $2 AND lease_owner = $3`, kind, dest, owner); err != nil {
		return false, err
	}
	var pending bool
	err := t.row(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_items WHERE kind = $1 AND destination = $2)`, kind, dest).Scan(&pending)
	return pending, translate(err)
}

func (t *txn) OutboxClearLeases(ctx context.Context) error {
	_, err := t.exec(ctx, `UPDATE outbox_destinations SET lease_owner = '', lease_until = 0 WHERE lease_owner <> ''`)
	return err
}

func (t *txn) OutboxRetryNow(ctx context.Context, kind, dest string, now int64) (bool, error) {
	return affected(t.exec(ctx, `UPDATE outbox_destinations SET retry_ts = 0
		WHERE kind = $1 AND destination = $2 AND retry_ts > $3`, kind, dest, now))
}
