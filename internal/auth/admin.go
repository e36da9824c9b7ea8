package auth

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// ErrUserExists is CreateUser's answer for an account that exists already.
var ErrUserExists = errors.New("already exists")

// CreateUser makes an account from the command line (porthole create-user), whatever the
// registration setting. If the account exists, admin=true makes it an administrator and
// anything else is an error. It reports whether the account was created.
func (a *Service) CreateUser(ctx context.Context, localpart, password string, admin bool) (userID string, created bool, err error) {
	if err := a.ValidateLocalpart(localpart); err != nil {
		return "", false, err
	}
	userID = a.UserID(localpart)
	if _, err := a.store.User(ctx, userID); err == nil {
		if !admin {
			return userID, false, fmt.Errorf("%s %w", userID, ErrUserExists)
		}
		return userID, false, a.store.Write(ctx, func(tx storage.Tx) error { return tx.SetAdmin(ctx, userID, true) })
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", false, err
	}
	if password == "" || len(password) > maxPasswordLen {
		return "", false, fmt.Errorf("a password of 1 to %d bytes is needed", maxPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), a.cfg.BcryptCost)
	if err != nil {
		return "", false, err
	}
	err = a.store.Write(ctx, func(tx storage.Tx) error {
		return tx.CreateUser(ctx, storage.User{ID: userID, PasswordHash: string(hash), DisplayName: &localpart, CreatedTS: time.Now().UnixMilli(), Admin: admin})
	})
	if errors.Is(err, storage.ErrConflict) {
		return userID, false, fmt.Errorf("%s %w", userID, ErrUserExists)
	}
	return userID, err == nil, err
}

// IsAdmin reports whether a user is a server administrator (read each time, so that a
// grant made with porthole create-user on a running server counts at once).
func (a *Service) IsAdmin(ctx context.Context, userID string) (bool, error) {
	u, err := a.store.User(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, mxerr.Internal(err)
	}
	return u.Admin && !u.Deactivated, nil
}

// Connection is one address and user agent a device was used from.
type Connection struct {
	IP        string `json:"ip"`
	LastSeen  int64  `json:"last_seen"`
	UserAgent string `json:"user_agent"`
}

// Whois is what GET /admin/whois answers: each device's connections, latest first.
type Whois struct {
	UserID  string
	Devices map[string][]Connection
}

// Whois looks a local user up, for the user themself or a server administrator.
func (a *Service) Whois(ctx context.Context, s *Session, userID string) (Whois, error) {
	if userID != s.UserID {
		admin, err := a.IsAdmin(ctx, s.UserID)
		if err != nil {
			return Whois{}, err
		}
		if !admin {
			return Whois{}, mxerr.Forbidden("You are not a server admin")
		}
	}
	if a.LocalpartOf(userID) == "" {
		return Whois{}, mxerr.Unknown("Can only whois a local user")
	}
	if _, err := a.store.User(ctx, userID); errors.Is(err, storage.ErrNotFound) {
		return Whois{}, mxerr.NotFound("User not found")
	} else if err != nil {
		return Whois{}, mxerr.Internal(err)
	}
	devices, err := a.store.Devices(ctx, userID)
	if err != nil {
		return Whois{}, mxerr.Internal(err)
	}
	stored, err := a.store.ClientIPs(ctx, userID)
	if err != nil {
		return Whois{}, mxerr.Internal(err)
	}
	// What this node saw but has not flushed yet is newer than what is stored.
	latest := map[seenKey]int64{}
	for _, c := range stored {
		latest[seenKey{c.UserID, c.DeviceID, c.IP, c.UserAgent}] = c.LastSeen
	}
	for k, ts := range a.seen.pendingFor(userID) {
		latest[k] = max(latest[k], ts)
	}
	out := Whois{UserID: userID, Devices: map[string][]Connection{}}
	for _, d := range devices {
		out.Devices[d.ID] = []Connection{}
	}
	for k, ts := range latest {
		if conns, ok := out.Devices[k.device]; ok {
			out.Devices[k.device] = append(conns, Connection{IP: k.ip, LastSeen: ts, UserAgent: k.userAgent})
		}
	}
	for _, conns := range out.Devices {
		sort.Slice(conns, func(i, j int) bool { return conns[i].LastSeen > conns[j].LastSeen })
	}
	return out, nil
}

// seenKey is one connection of a device.
type seenKey struct{ user, device, ip, userAgent string }

// seenLog collects where sessions were used from, in memory, until the next flush.
type seenLog struct {
	mu      sync.Mutex
	pending map[seenKey]int64
}

// maxPendingSeen bounds the connections held between flushes; beyond it new ones are
// dropped until the next flush (an address is recorded again on its next request).
const maxPendingSeen = 100000

// maxUserAgent bounds a stored user agent.
const maxUserAgent = 512

// Seen records that a session made a request from ip with userAgent.
func (a *Service) Seen(s *Session, ip, userAgent string, now time.Time) {
	if len(userAgent) > maxUserAgent {
		userAgent = userAgent[:maxUserAgent]
	}
	k := seenKey{s.UserID, s.DeviceID, ip, userAgent}
	a.seen.mu.Lock()
	defer a.seen.mu.Unlock()
	if a.seen.pending == nil {
		a.seen.pending = map[seenKey]int64{}
	}
	if _, ok := a.seen.pending[k]; ok || len(a.seen.pending) < maxPendingSeen {
		a.seen.pending[k] = now.UnixMilli()
	}
}

func (l *seenLog) pendingFor(userID string) map[seenKey]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[seenKey]int64{}
	for k, ts := range l.pending {
		if k.user == userID {
			out[k] = ts
		}
	}
	return out
}

// clientIPRetention is how long a connection is remembered after it was last seen (as
// Synapse's default user_ips_max_age).
const clientIPRetention = 28 * 24 * time.Hour

// FlushSeen writes the connections seen since the last flush, and forgets those older than
// the retention period.
func (a *Service) FlushSeen(ctx context.Context, now time.Time) error {
	a.seen.mu.Lock()
	pending := a.seen.pending
	a.seen.pending = nil
	a.seen.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	ips := make([]storage.ClientIP, 0, len(pending))
	for k, ts := range pending {
		ips = append(ips, storage.ClientIP{UserID: k.user, DeviceID: k.device, IP: k.ip, UserAgent: k.userAgent, LastSeen: ts})
	}
	// A stable order keeps concurrent flushes of several nodes from deadlocking on rows.
	sort.Slice(ips, func(i, j int) bool {
		x, y := ips[i], ips[j]
		if x.UserID != y.UserID {
			return x.UserID < y.UserID
		}
		if x.DeviceID != y.DeviceID {
			return x.DeviceID < y.DeviceID
		}
		if x.IP != y.IP {
			return x.IP < y.IP
		}
		return x.UserAgent < y.UserAgent
	})
	return a.store.Write(ctx, func(tx storage.Tx) error {
		if err := tx.PutClientIPs(ctx, ips); err != nil {
			return err
		}
		return tx.PruneClientIPs(ctx, now.Add(-clientIPRetention).UnixMilli())
	})
}

// OpenIDToken is the answer of POST /user/{userId}/openid/request_token.
type OpenIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// openIDLifetime is how long an OpenID token is valid (as in Synapse).
const openIDLifetime = time.Hour

// RequestOpenIDToken issues a token another service can exchange, over federation, for
// the user's ID. Only its hash is stored.
func (a *Service) RequestOpenIDToken(ctx context.Context, s *Session, userID string, now time.Time) (OpenIDToken, error) {
	if userID != s.UserID {
		return OpenIDToken{}, mxerr.Forbidden("Cannot request tokens for other users.")
	}
	token := RandomID(24)
	err := a.store.Write(ctx, func(tx storage.Tx) error {
		return tx.PutOpenIDToken(ctx, HashToken(token), userID, now.Add(openIDLifetime).UnixMilli(), now.UnixMilli())
	})
	if err != nil {
		return OpenIDToken{}, mxerr.Internal(err)
	}
	return OpenIDToken{AccessToken: token, TokenType: "Bearer", MatrixServerName: a.cfg.ServerName, ExpiresIn: int64(openIDLifetime / time.Second)}, nil
}

// OpenIDUser returns the user an unexpired OpenID token was issued to (for federation's
// /openid/userinfo); an unknown or expired token is 401 M_UNKNOWN_TOKEN.
func (a *Service) OpenIDUser(ctx context.Context, token string, now time.Time) (string, error) {
	if token == "" || len(token) > 512 {
		return "", mxerr.UnknownToken("Token not found")
	}
	userID, err := a.store.OpenIDToken(ctx, HashToken(token), now.UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return "", mxerr.UnknownToken("Token not found")
	} else if err != nil {
		return "", mxerr.Internal(err)
	}
	return userID, nil
}
