package sqlstore

import (
	"context"
	"database/sql"

	"porthole/internal/storage"
)

// Signing keys: see storage.KeyReader and storage.KeyTx.

func (r reader) ServerKeys(ctx context.Context, serverName string) ([]storage.ServerKey, error) {
	rows, err := r.query(ctx, `SELECT server_name, key_id, verify_key, valid_until_ts, expired, key_json, fetched_ts
		FROM server_keys WHERE server_name = $1 ORDER BY key_id`, serverName)
	return collect(rows, err, func(rows *sql.Rows) (storage.ServerKey, error) {
		var k storage.ServerKey
		var resp string
		err := rows.Scan(&k.ServerName, &k.KeyID, &k.Key, &k.ValidUntilTS, &k.Expired, &resp, &k.FetchedTS)
		k.Response = []byte(resp)
		return k, err
	})
}

func (r reader) OwnKeys(ctx context.Context) ([]storage.OwnKey, error) {
	rows, err := r.query(ctx, `SELECT key_id, verify_key, expired_ts FROM own_signing_keys
		ORDER BY expired_ts = 0 DESC, expired_ts DESC, key_id`)
	return collect(rows, err, func(rows *sql.Rows) (storage.OwnKey, error) {
		var k storage.OwnKey
		err := rows.Scan(&k.KeyID, &k.Key, &k.ExpiredTS)
		return k, err
	})
}

func (t *txn) PutServerKeys(ctx context.Context, keys []storage.ServerKey) error {
	for _, k := range keys {
		_, err := t.exec(ctx, `INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, expired, key_json, fetched_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,
				valid_until_ts = excluded.valid_until_ts, expired = excluded.expired,
				key_json = excluded.key_json, fetched_ts = excluded.fetched_ts
			WHERE excluded.expired OR excluded.valid_until_ts >= server_keys.valid_until_ts`,
			k.ServerName, k.KeyID, k.Key, k.ValidUntilTS, k.Expired, string(k.Response), k.FetchedTS)
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) SetOwnKey(ctx context.Context, keyID, key string, now int64) error {
	if _, err := t.exec(ctx, `UPDATE own_signing_keys SET expired_ts = $1 WHERE expired_ts = 0 AND key_id <> $2`, now, keyID); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO own_signing_keys (key_id, verify_key, expired_ts) VALUES ($1, $2, 0)
		ON CONFLICT (key_id) DO UPDATE SET verify_key = excluded.verify_key, expired_ts = 0`, keyID, key)
	return err
}

func (r reader) FederationTxn(ctx context.Context, origin, txnID string) ([]byte, error) {
	var resp string
	err := r.row(ctx, `SELECT response FROM federation_txns WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&resp)
	return []byte(resp), translate(err)
}

func (t *txn) PutFederationTxn(ctx context.Context, origin, txnID string, response []byte, now, forgetBefore int64) error {
	if _, err := t.exec(ctx, `DELETE FROM federation_txns WHERE received_ts < $1`, forgetBefore); err != nil {
		return err
	}
	_, err := t.exec(ctx, `INSERT INTO federation_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, string(response), now)
	return err
}
