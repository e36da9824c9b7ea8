// Package auth turns access tokens into sessions and owns accounts: registration (users
// and guests, with user-interactive auth), login, logout, devices and passwords.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"porthole/internal/appservice"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// Session is an authenticated request's identity.
type Session struct {
	UserID   string
	DeviceID string
	IsGuest  bool
	// AppService is the application service behind a request made with its as_token
	// (nil for users' own tokens); it acts as UserID.
	AppService *appservice.Registration
	// Timestamp is the origin_server_ts a service asked for with ?ts= (timestamp
	// massaging: send and state requests honour it); 0 means now.
	Timestamp int64
	tokenHash string
	revoked   chan struct{}
	once      sync.Once
}

// Revoked is closed when the session's token stops working (logout, device deletion,
// deactivation, guest upgrade), so long-polls holding it can end at once.
func (s *Session) Revoked() <-chan struct{} { return s.revoked }

func (s *Session) revoke() { s.once.Do(func() { close(s.revoked) }) }

// NewToken returns a new random access token and its stored hash.
func NewToken() (token, hash string) {
	var b [32]byte
	rand.Read(b[:])
	token = "ph_" + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token)
}

// HashToken is how tokens are stored: only their SHA-256 is kept.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// RandomID returns n random bytes as an unpadded URL-safe string.
func RandomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// RandomDeviceID returns a device ID in the customary upper-case letters.
func RandomDeviceID() string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// sessionCache keeps resolved tokens in memory so long-polls do not read the database on
// every request. Revocation goes through it, so a revoked token fails at once.
type sessionCache struct {
	mu       sync.Mutex
	byHash   map[string]*Session
	maxItems int
}

func (c *sessionCache) get(hash string) *Session {
	c.mu.Lock()
	s := c.byHash[hash]
	c.mu.Unlock()
	return s
}

func (c *sessionCache) put(s *Session) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byHash[s.tokenHash]; ok {
		return old
	}
	if len(c.byHash) >= c.maxItems {
		// Drop an arbitrary tenth; evicted sessions are simply read again.
		n := c.maxItems / 10
		for k := range c.byHash {
			delete(c.byHash, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.byHash[s.tokenHash] = s
	return s
}

// revokeWhere removes and revokes cached sessions matching pred.
func (c *sessionCache) revokeWhere(pred func(*Session) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.byHash {
		if pred(s) {
			delete(c.byHash, k)
			s.revoke()
		}
	}
}

// CacheChannel carries cache invalidations between processes sharing a database:
// "revoke\t<user>\t<device>" (device "*" for all of the user's sessions); rooms and e2ee
// send "forget\t<user>\t<room>" and "keys\t<user>\t<device>" (key counts changed) on it.
const CacheChannel = "porthole_cache"

// notifyRevoked tells other processes, when tx commits, to drop cached sessions.
func notifyRevoked(ctx context.Context, tx storage.Tx, userID string, devices []string) error {
	if devices == nil {
		return tx.Notify(ctx, CacheChannel, "revoke\t"+userID+"\t*")
	}
	for _, d := range devices {
		if err := tx.Notify(ctx, CacheChannel, "revoke\t"+userID+"\t"+d); err != nil {
			return err
		}
	}
	return nil
}

// RevokeCached drops this process's cached sessions of a user's device ("*": all), after
// another process revoked them in storage.
func (a *Service) RevokeCached(userID, deviceID string) {
	a.cache.revokeWhere(func(s *Session) bool { return s.UserID == userID && (deviceID == "*" || s.DeviceID == deviceID) })
}

// TokenFromRequest takes the access token from the Authorization header or, as older
// clients and sytest send it, the access_token query parameter.
func TokenFromRequest(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && tok != "" {
			return strings.TrimSpace(tok), true
		}
		return "", false
	}
	if r.Form == nil {
		r.Form = r.URL.Query()
	}
	if tok := r.Form.Get("access_token"); tok != "" {
		return tok, true
	}
	return "", false
}

// Authenticate resolves the request's token. A missing token is 401 M_MISSING_TOKEN, an
// unknown or revoked one 401 M_UNKNOWN_TOKEN.
func (a *Service) Authenticate(ctx context.Context, r *http.Request) (*Session, error) {
	tok, ok := TokenFromRequest(r)
	if !ok {
		if r.Header.Get("Authorization") != "" {
			return nil, mxerr.UnknownToken("Invalid Authorization header")
		}
		return nil, mxerr.MissingToken()
	}
	if reg := a.cfg.AppServices.ByToken(tok); reg != nil {
		return a.appServiceSession(ctx, r, reg)
	}
	return a.SessionForToken(ctx, tok)
}

// SessionForToken resolves a token.
func (a *Service) SessionForToken(ctx context.Context, tok string) (*Session, error) {
	if len(tok) > 512 {
		return nil, mxerr.UnknownToken("Unrecognised access token")
	}
	hash := HashToken(tok)
	if s := a.cache.get(hash); s != nil {
		return s, nil
	}
	owner, err := a.store.TokenOwner(ctx, hash)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, mxerr.UnknownToken("Unrecognised access token")
	} else if err != nil {
		return nil, mxerr.Internal(err)
	}
	// Lookups are by the token's SHA-256, so timing reveals nothing about the token itself.
	s := &Session{UserID: owner.UserID, DeviceID: owner.DeviceID, IsGuest: owner.IsGuest, tokenHash: hash, revoked: make(chan struct{})}
	return a.cache.put(s), nil
}

// answerCache remembers the first answers of completed registrations for a while, in
// memory only (they hold access tokens), bounded in count.
type answerCache struct {
	mu   sync.Mutex
	byID map[string]answer
}

type answer struct {
	login   Login
	expires time.Time
}

const (
	answerTTL     = 10 * time.Minute
	answerMaxKept = 10000
)

func (c *answerCache) put(session string, l Login) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if len(c.byID) >= answerMaxKept {
		for k, v := range c.byID {
			if now.After(v.expires) {
				delete(c.byID, k)
			}
		}
		if len(c.byID) >= answerMaxKept {
			return // under a flood of registrations, retries are refused rather than kept
		}
	}
	c.byID[session] = answer{login: l, expires: now.Add(answerTTL)}
}

func (c *answerCache) get(session string) (Login, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.byID[session]
	if !ok || time.Now().After(a.expires) {
		delete(c.byID, session)
		return Login{}, false
	}
	return a.login, true
}

func (c *answerCache) dropUser(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.byID {
		if v.login.UserID == userID {
			delete(c.byID, k)
		}
	}
}
