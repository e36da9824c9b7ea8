package storage

import "context"

// ServerKey is a signing key of another server, with the signed key response (from the
// server itself, or relayed by a notary) that listed it, so that this server can pass it on
// when it acts as a notary.
type ServerKey struct {
	ServerName string
	KeyID      string
	// Key is the unpadded base64 ed25519 public key.
	Key string
	// ValidUntilTS (unix ms) is how long the key may verify signatures: the response's
	// valid_until_ts for a key in verify_keys, its expired_ts for one in old_verify_keys.
	ValidUntilTS int64
	// Expired is set for a key listed in old_verify_keys.
	Expired   bool
	Response  []byte
	FetchedTS int64
}

// OwnKey is a signing key this server has used: the current one has ExpiredTS 0; the
// others are published as old_verify_keys.
type OwnKey struct {
	KeyID     string
	Key       string
	ExpiredTS int64
}

// KeyReader reads other servers' keys, this server's key history, and the transactions
// received from other servers.
type KeyReader interface {
	// ServerKeys returns the stored keys of a server, by key ID.
	ServerKeys(ctx context.Context, serverName string) ([]ServerKey, error)
	// OwnKeys returns the keys this server has signed with, current first.
	OwnKeys(ctx context.Context) ([]OwnKey, error)
	// FederationTxn returns the answer given to a transaction received from origin
	// (ErrNotFound if none was).
	FederationTxn(ctx context.Context, origin, txnID string) ([]byte, error)
}

// KeyTx writes keys.
type KeyTx interface {
	// PutServerKeys stores fetched keys. A key already stored is replaced unless the stored
	// one is valid for longer and the new one is not an expiry (old_verify_keys): a stale
	// answer never shortens a key's validity, but a server's word that a key expired does.
	PutServerKeys(ctx context.Context, keys []ServerKey) error
	// SetOwnKey records keyID as this server's current key; any other current key expires
	// at now.
	SetOwnKey(ctx context.Context, keyID, key string, now int64) error
	// PutFederationTxn records the answer to a received transaction (the first answer
	// stays), and forgets those received before forgetBefore.
	PutFederationTxn(ctx context.Context, origin, txnID string, response []byte, now, forgetBefore int64) error
}
