package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tidwall/sjson"
	"go.mau.fi/util/exgjson"
	"go.mau.fi/util/jsontime"
	mfed "maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"porthole/internal/storage"
)

// Notary is a key server trusted to relay other servers' keys, with the keys its answers
// must be signed by.
type Notary struct {
	ServerName string
	Keys       map[id.KeyID]id.SigningKey
}

// ErrKeyNotFound means no key with that ID is known for the server, even after asking.
var ErrKeyNotFound = errors.New("signing key not found")

// Bounds of key fetching.
const (
	// ownKeyLifetime is the valid_until_ts this server gives its key (as Synapse's default).
	ownKeyLifetime = 24 * time.Hour
	// maxKeyValidity caps how long a fetched key is trusted, whatever it claims (the spec's
	// seven days for room versions 5 and later).
	maxKeyValidity = 7 * 24 * time.Hour
	// minRefetch spaces out fetches of one server's keys that its requests or events cause
	// (a notary query that asks for fresher keys fetches at once).
	minRefetch = 10 * time.Second
	// maxBackoff bounds the wait after failed fetches (2 s, 4 s, 8 s... per failure).
	maxBackoff       = 10 * time.Minute
	keyFetchTimeout  = 15 * time.Second
	maxCachedServers = 10000
)

// KeyRing holds signing keys: this server's (published with its old ones) and other
// servers' (fetched from them, else through the notaries, kept in the database so that a
// restart does not fetch them again, and in memory).
type KeyRing struct {
	store    storage.Store
	client   *Client
	name     string
	key      *mfed.SigningKey
	old      map[id.KeyID]mfed.OldVerifyKey
	notaries []Notary
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	cache   map[string]map[id.KeyID]storage.ServerKey
	flights map[string]*flight
	fetched map[string]fetchState
}

type flight struct {
	done chan struct{}
	err  error
}

type fetchState struct {
	last     time.Time // last fetch attempt
	failures int       // consecutive failures
}

// NewKeyRing records key as this server's current key (a key it replaces becomes an old
// key, published in old_verify_keys) and returns the key ring.
func NewKeyRing(ctx context.Context, store storage.Store, client *Client, serverName string, key *mfed.SigningKey, notaries []Notary, log *slog.Logger) (*KeyRing, error) {
	k := &KeyRing{store: store, client: client, name: serverName, key: key, notaries: notaries, log: log, now: time.Now,
		cache: map[string]map[id.KeyID]storage.ServerKey{}, flights: map[string]*flight{}, fetched: map[string]fetchState{},
		old: map[id.KeyID]mfed.OldVerifyKey{}}
	err := store.Write(ctx, func(tx storage.Tx) error {
		return tx.SetOwnKey(ctx, string(key.ID), string(key.Pub), k.now().UnixMilli())
	})
	if err != nil {
		return nil, fmt.Errorf("recording the signing key: %w", err)
	}
	own, err := store.OwnKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading old signing keys: %w", err)
	}
	for _, o := range own {
		if o.ExpiredTS != 0 {
			k.old[id.KeyID(o.KeyID)] = mfed.OldVerifyKey{Key: id.SigningKey(o.Key), ExpiredTS: jsontime.UMInt(o.ExpiredTS)}
		}
	}
	return k, nil
}

// ServerName is this server's name.
func (k *KeyRing) ServerName() string { return k.name }

// ownKeyResponse is GET /_matrix/key/v2/server's answer; old_verify_keys is always there
// (sytest requires it, empty or not).
type ownKeyResponse struct {
	ServerName    string                            `json:"server_name"`
	VerifyKeys    map[id.KeyID]mfed.ServerVerifyKey `json:"verify_keys"`
	OldVerifyKeys map[id.KeyID]mfed.OldVerifyKey    `json:"old_verify_keys"`
	ValidUntilTS  int64                             `json:"valid_until_ts"`
	Signatures    map[string]map[id.KeyID]string    `json:"signatures,omitempty"`
}

// OwnKeys is this server's signed key response: its current key, valid for a day, and
// the keys it signed with before.
func (k *KeyRing) OwnKeys() (json.RawMessage, error) {
	resp := ownKeyResponse{ServerName: k.name, VerifyKeys: map[id.KeyID]mfed.ServerVerifyKey{k.key.ID: {Key: k.key.Pub}},
		OldVerifyKeys: k.old, ValidUntilTS: k.now().Add(ownKeyLifetime).UnixMilli()}
	sig, err := k.key.SignJSON(resp)
	if err != nil {
		return nil, err
	}
	resp.Signatures = map[string]map[id.KeyID]string{k.name: {k.key.ID: sig}}
	return json.Marshal(resp)
}

// Key returns the server's key keyID. When none stored is valid until minValidUntil it
// asks the server (then the notaries) first, and returns the best it then has, which the
// caller must check: a key stored but expired is still returned. ErrKeyNotFound when the
// key is unknown.
func (k *KeyRing) Key(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (storage.ServerKey, error) {
	if server == k.name {
		return k.ownKey(keyID)
	}
	keys, err := k.cached(ctx, server)
	if err != nil {
		return storage.ServerKey{}, err
	}
	if have, ok := keys[keyID]; ok && have.ValidUntilTS >= minValidUntil.UnixMilli() {
		return have, nil
	}
	fetchErr := k.fetch(ctx, server, []id.KeyID{keyID}, minValidUntil, false)
	if keys, err = k.cached(ctx, server); err != nil {
		return storage.ServerKey{}, err
	}
	if have, ok := keys[keyID]; ok {
		return have, nil
	}
	if fetchErr != nil {
		return storage.ServerKey{}, fmt.Errorf("%w: %s of %s (%v)", ErrKeyNotFound, keyID, server, fetchErr)
	}
	return storage.ServerKey{}, fmt.Errorf("%w: %s of %s", ErrKeyNotFound, keyID, server)
}

// GetKey is Key as the PDU signature checks want it (pdu.GetKeyFunc): the key and its
// validity, or an empty key when none is known.
func (k *KeyRing) GetKey(server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyFetchTimeout)
	defer cancel()
	key, err := k.Key(ctx, server, keyID, minValidUntil)
	if errors.Is(err, ErrKeyNotFound) {
		return "", time.Time{}, nil
	} else if err != nil {
		return "", time.Time{}, err
	}
	return id.SigningKey(key.Key), time.UnixMilli(key.ValidUntilTS), nil
}

func (k *KeyRing) ownKey(keyID id.KeyID) (storage.ServerKey, error) {
	if keyID == k.key.ID {
		return storage.ServerKey{ServerName: k.name, KeyID: string(keyID), Key: string(k.key.Pub),
			ValidUntilTS: k.now().Add(ownKeyLifetime).UnixMilli()}, nil
	}
	if o, ok := k.old[keyID]; ok {
		return storage.ServerKey{ServerName: k.name, KeyID: string(keyID), Key: string(o.Key), ValidUntilTS: o.ExpiredTS.UnixMilli(), Expired: true}, nil
	}
	return storage.ServerKey{}, fmt.Errorf("%w: %s of %s", ErrKeyNotFound, keyID, k.name)
}

// cached returns the server's keys from memory, read from the database on first use.
func (k *KeyRing) cached(ctx context.Context, server string) (map[id.KeyID]storage.ServerKey, error) {
	k.mu.Lock()
	keys, ok := k.cache[server]
	k.mu.Unlock()
	if ok {
		return keys, nil
	}
	return k.reload(ctx, server)
}

func (k *KeyRing) reload(ctx context.Context, server string) (map[id.KeyID]storage.ServerKey, error) {
	stored, err := k.store.ServerKeys(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("reading keys of %s: %w", server, err)
	}
	keys := make(map[id.KeyID]storage.ServerKey, len(stored))
	for _, s := range stored {
		keys[id.KeyID(s.KeyID)] = s
	}
	k.mu.Lock()
	if len(k.cache) >= maxCachedServers {
		clear(k.cache) // the database still has them
	}
	k.cache[server] = keys
	k.mu.Unlock()
	return keys, nil
}

// fetch asks the server for its keys, then each notary until one has what is wanted,
// and stores what they answer. One fetch per server runs at a time (others wait for it);
// after failures the server is left alone for a while (backoff). forNotary is a fetch
// for a notary query: from the server only (no notary chains), and at once, where other
// fetches of a server are spaced by minRefetch and wait out the backoff (notary queries
// are rate-limited per address instead).
func (k *KeyRing) fetch(ctx context.Context, server string, want []id.KeyID, minValidUntil time.Time, forNotary bool) error {
	if _, _, ok := mfed.ParseServerName(server); !ok {
		return fmt.Errorf("%q is not a server name", server)
	}
	k.mu.Lock()
	if f := k.flights[server]; f != nil {
		k.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	st := k.fetched[server]
	if wait := backoff(st.failures); !forNotary && st.failures > 0 && k.now().Sub(st.last) < wait {
		k.mu.Unlock()
		return fmt.Errorf("keys of %s: %d failed fetches, next try in %s", server, st.failures, (wait - k.now().Sub(st.last)).Round(time.Second))
	}
	if !forNotary && st.failures == 0 && !st.last.IsZero() && k.now().Sub(st.last) < minRefetch {
		k.mu.Unlock()
		return nil
	}
	f := &flight{done: make(chan struct{})}
	k.flights[server] = f
	k.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, keyFetchTimeout)
	f.err = k.fetchNow(ctx, server, want, minValidUntil, forNotary)
	cancel()

	k.mu.Lock()
	delete(k.flights, server)
	st.last = k.now()
	if f.err != nil {
		st.failures++
	} else {
		st.failures = 0
	}
	if len(k.fetched) >= maxCachedServers {
		clear(k.fetched)
	}
	k.fetched[server] = st
	k.mu.Unlock()
	close(f.done)
	return f.err
}

func backoff(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	return min(time.Duration(1<<min(failures, 20))*time.Second, maxBackoff)
}

// fetchNow asks the server, then (unless directOnly) the notaries in turn, until the keys
// wanted are had valid until minValidUntil.
func (k *KeyRing) fetchNow(ctx context.Context, server string, want []id.KeyID, minValidUntil time.Time, directOnly bool) error {
	satisfied := func(keys []storage.ServerKey) bool {
		for _, w := range want {
			i := slices.IndexFunc(keys, func(s storage.ServerKey) bool { return s.KeyID == string(w) })
			if i < 0 || keys[i].ValidUntilTS < minValidUntil.UnixMilli() {
				return false
			}
		}
		return len(keys) > 0
	}
	keys, err := k.fetchDirect(ctx, server)
	k.client.keys.WithLabelValues("direct", outcome(err)).Inc()
	if err == nil {
		if err := k.save(ctx, server, keys); err != nil {
			return err
		}
		if satisfied(keys) || directOnly {
			return nil
		}
	} else {
		k.log.Info("fetching keys directly failed", "server", server, "err", err)
		if directOnly {
			return err
		}
	}
	errs := []error{fmt.Errorf("from %s: %w", server, err)}
	if err == nil {
		errs[0] = fmt.Errorf("from %s: the keys asked for are not there", server)
	}
	for _, n := range k.notaries {
		keys, nerr := k.fetchFromNotary(ctx, n, server, want, minValidUntil)
		k.client.keys.WithLabelValues("notary", outcome(nerr)).Inc()
		if nerr != nil {
			k.log.Info("fetching keys through a notary failed", "server", server, "notary", n.ServerName, "err", nerr)
			errs = append(errs, fmt.Errorf("through %s: %w", n.ServerName, nerr))
			continue
		}
		if err := k.save(ctx, server, keys); err != nil {
			return err
		}
		if satisfied(keys) {
			return nil
		}
	}
	if err == nil {
		return nil // the server answered; what it does not have, nobody had
	}
	return errors.Join(errs...)
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (k *KeyRing) save(ctx context.Context, server string, keys []storage.ServerKey) error {
	if err := k.store.Write(ctx, func(tx storage.Tx) error { return tx.PutServerKeys(ctx, keys) }); err != nil {
		return fmt.Errorf("storing keys of %s: %w", server, err)
	}
	_, err := k.reload(ctx, server)
	return err
}

// fetchDirect is GET /_matrix/key/v2/server on the server itself.
func (k *KeyRing) fetchDirect(ctx context.Context, server string) ([]storage.ServerKey, error) {
	body, _, err := k.client.MakeFullRequest(ctx, mfed.RequestParams{ServerName: server, Method: http.MethodGet, Path: mfed.KeyURLPath{"v2", "server"}})
	if err != nil {
		return nil, err
	}
	return k.parseKeyResponse(server, body)
}

// fetchFromNotary is POST /_matrix/key/v2/query on a notary; every answer must carry the
// notary's signature by one of its configured keys.
func (k *KeyRing) fetchFromNotary(ctx context.Context, n Notary, server string, want []id.KeyID, minValidUntil time.Time) ([]storage.ServerKey, error) {
	criteria := map[string]map[string]int64{}
	for _, w := range want {
		criteria[string(w)] = map[string]int64{"minimum_valid_until_ts": minValidUntil.UnixMilli()}
	}
	req := map[string]any{"server_keys": map[string]any{server: criteria}}
	var resp struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	body, _, err := k.client.MakeFullRequest(ctx, mfed.RequestParams{ServerName: n.ServerName, Method: http.MethodPost,
		Path: mfed.KeyURLPath{"v2", "query"}, RequestJSON: req})
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("notary answer is not a key query response: %w", err)
	}
	var out []storage.ServerKey
	for _, raw := range resp.ServerKeys {
		signed := false
		for kid, key := range n.Keys {
			if signutil.VerifyJSON(n.ServerName, kid, key, raw) == nil {
				signed = true
				break
			}
		}
		if !signed {
			return nil, fmt.Errorf("an answer of %s is not signed by its configured key", n.ServerName)
		}
		keys, err := k.parseKeyResponse(server, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s knows no keys of %s", n.ServerName, server)
	}
	return out, nil
}

// parseKeyResponse checks a key response of server (its name, and a signature by every
// key it lists as current) and returns its keys.
func (k *KeyRing) parseKeyResponse(server string, raw []byte) ([]storage.ServerKey, error) {
	var skr mfed.ServerKeyResponse
	if err := json.Unmarshal(raw, &skr); err != nil {
		return nil, fmt.Errorf("key response of %s is not valid: %w", server, err)
	}
	skr.Raw = raw
	if skr.ServerName != server {
		return nil, fmt.Errorf("key response for %q names %q", server, skr.ServerName)
	}
	if len(skr.VerifyKeys) == 0 {
		return nil, fmt.Errorf("key response of %s lists no keys", server)
	}
	if err := skr.VerifySelfSignature(); err != nil {
		return nil, fmt.Errorf("key response of %s: %w", server, err)
	}
	now := k.now()
	validUntil := min(skr.ValidUntilTS.UnixMilli(), now.Add(maxKeyValidity).UnixMilli())
	var out []storage.ServerKey
	for kid, vk := range skr.VerifyKeys {
		out = append(out, storage.ServerKey{ServerName: server, KeyID: string(kid), Key: string(vk.Key), ValidUntilTS: validUntil,
			Response: raw, FetchedTS: now.UnixMilli()})
	}
	for kid, ok := range skr.OldVerifyKeys {
		if _, current := skr.VerifyKeys[kid]; current || ok.Key == "" {
			continue
		}
		out = append(out, storage.ServerKey{ServerName: server, KeyID: string(kid), Key: string(ok.Key), ValidUntilTS: ok.ExpiredTS.UnixMilli(),
			Expired: true, Response: raw, FetchedTS: now.UnixMilli()})
	}
	return out, nil
}

// Query answers a notary request for a server's keys: the key responses stored for the
// keys asked (all the server's keys when none is named), fetched from the server first
// when one of them is unknown or not valid until minValidUntil, each countersigned by this
// server. When the server cannot be reached, what is stored is answered, expired or not.
func (k *KeyRing) Query(ctx context.Context, server string, keyIDs []id.KeyID, minValidUntil time.Time) ([]json.RawMessage, error) {
	if server == k.name {
		own, err := k.OwnKeys()
		if err != nil {
			return nil, err
		}
		return []json.RawMessage{own}, nil
	}
	if _, _, ok := mfed.ParseServerName(server); !ok {
		return nil, nil
	}
	relevant := func(keys map[id.KeyID]storage.ServerKey) ([]storage.ServerKey, bool) {
		var out []storage.ServerKey
		fresh := len(keyIDs) > 0
		if len(keyIDs) == 0 {
			for _, s := range keys {
				out = append(out, s)
				fresh = fresh || s.ValidUntilTS >= minValidUntil.UnixMilli()
			}
			return out, fresh
		}
		for _, kid := range keyIDs {
			s, ok := keys[kid]
			if !ok {
				fresh = false
				continue
			}
			out = append(out, s)
			fresh = fresh && s.ValidUntilTS >= minValidUntil.UnixMilli()
		}
		return out, fresh
	}
	keys, err := k.reload(ctx, server)
	if err != nil {
		return nil, err
	}
	found, fresh := relevant(keys)
	if !fresh {
		if err := k.fetch(ctx, server, keyIDs, minValidUntil, true); err != nil {
			k.log.Info("notary: fetching keys failed; answering what is stored", "server", server, "err", err)
		}
		if keys, err = k.cached(ctx, server); err != nil {
			return nil, err
		}
		found, _ = relevant(keys)
	}
	var out []json.RawMessage
	seen := map[string]bool{}
	for _, s := range found {
		if seen[string(s.Response)] {
			continue
		}
		seen[string(s.Response)] = true
		signed, err := k.countersign(s.Response)
		if err != nil {
			return nil, err
		}
		out = append(out, signed)
	}
	return out, nil
}

// countersign adds this server's signature to a key response it passes on.
func (k *KeyRing) countersign(raw []byte) (json.RawMessage, error) {
	sig, err := k.key.SignJSON(json.RawMessage(raw))
	if err != nil {
		return nil, err
	}
	return sjson.SetBytes(raw, exgjson.Path("signatures", k.name, string(k.key.ID)), sig)
}
