package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"porthole/internal/appservice"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// Config is what the account service needs to know.
type Config struct {
	ServerName       string
	OpenRegistration bool
	GuestsEnabled    bool
	BcryptCost       int
	// AppServices are the configured application services (their tokens authenticate,
	// their exclusive namespaces are closed to others); nil for none.
	AppServices *appservice.Registry
}

// Service owns accounts and sessions.
type Service struct {
	store storage.Store
	cfg   Config
	log   *slog.Logger
	cache sessionCache
	// answers holds the first answer of each recently completed registration, to repeat
	// to a client that retries the same UIA session (tokens are never stored).
	answers answerCache
	// seen holds where sessions were used from, until FlushSeen writes it.
	seen seenLog
	// DeviceTx, when set, runs every transaction that creates, renames or deletes devices,
	// so that what else belongs to a device (its keys, its to-device inbox) goes in the same
	// transaction and the change is announced once committed. Without it such a
	// transaction is a plain one.
	DeviceTx func(ctx context.Context, fn func(tx storage.Tx) (DeviceChange, error)) error
}

// DeviceChange is what a transaction did to one user's devices.
type DeviceChange struct {
	UserID  string
	Created []string
	Renamed []string
	Deleted []string
}

// Empty reports that no device changed.
func (c DeviceChange) Empty() bool {
	return c.UserID == "" || len(c.Created)+len(c.Renamed)+len(c.Deleted) == 0
}

// deviceWrite runs a transaction that changes devices (through DeviceTx when set).
func (a *Service) deviceWrite(ctx context.Context, fn func(tx storage.Tx) (DeviceChange, error)) error {
	if a.DeviceTx != nil {
		return a.DeviceTx(ctx, fn)
	}
	return a.store.Write(ctx, func(tx storage.Tx) error {
		_, err := fn(tx)
		return err
	})
}

// New returns the account service.
func New(store storage.Store, cfg Config, log *slog.Logger) *Service {
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	return &Service{store: store, cfg: cfg, log: log, cache: sessionCache{byHash: make(map[string]*Session), maxItems: 1 << 20},
		answers: answerCache{byID: make(map[string]answer)}}
}

// Login is what registration and login return.
type Login struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
	HomeServer  string `json:"home_server"`
}

// AuthDict is the "auth" object of user-interactive authentication.
type AuthDict struct {
	Type       string          `json:"type"`
	Session    string          `json:"session"`
	Password   string          `json:"password"`
	User       string          `json:"user"`
	Identifier *UserIdentifier `json:"identifier"`
}

// UserIdentifier is the login "identifier" object.
type UserIdentifier struct {
	Type string `json:"type"`
	User string `json:"user"`
}

// RegisterRequest is the body of POST /register.
type RegisterRequest struct {
	Username                 string    `json:"username"`
	Password                 *string   `json:"password"`
	DeviceID                 string    `json:"device_id"`
	InitialDeviceDisplayName *string   `json:"initial_device_display_name"`
	InhibitLogin             bool      `json:"inhibit_login"`
	Auth                     *AuthDict `json:"auth"`
	GuestAccessToken         string    `json:"guest_access_token"`
}

const maxPasswordLen = 512

// ValidateLocalpart checks a requested username: lower-case, the spec's characters, not
// all digits (numeric localparts are reserved for guests), and a user ID of at most 255.
func (a *Service) ValidateLocalpart(localpart string) error {
	if localpart == "" {
		return mxerr.InvalidUsername("Username must not be empty")
	}
	for _, c := range localpart {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._=-/+", c)) {
			return mxerr.InvalidUsername("Username may only contain a-z, 0-9, and ._=-/+")
		}
	}
	if _, err := strconv.ParseUint(localpart, 10, 64); err == nil || strings.Trim(localpart, "0123456789") == "" {
		return mxerr.InvalidUsername("Numeric user IDs are reserved for guest users")
	}
	if len(a.UserID(localpart)) > 255 {
		return mxerr.InvalidUsername("User ID may not be longer than 255 characters")
	}
	return a.checkNotExclusive(a.UserID(localpart), nil)
}

// UserID builds a local user ID.
func (a *Service) UserID(localpart string) string { return "@" + localpart + ":" + a.cfg.ServerName }

// LocalpartOf returns the localpart of a local user ID, or "" if it is not local.
func (a *Service) LocalpartOf(userID string) string {
	if !strings.HasPrefix(userID, "@") || !strings.HasSuffix(userID, ":"+a.cfg.ServerName) {
		return ""
	}
	return userID[1 : len(userID)-len(a.cfg.ServerName)-1]
}

// Available reports whether a username may be registered.
func (a *Service) Available(ctx context.Context, localpart string) error {
	if err := a.ValidateLocalpart(localpart); err != nil {
		return err
	}
	_, err := a.store.User(ctx, a.UserID(localpart))
	if err == nil {
		return mxerr.UserInUse("User ID already taken.")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return mxerr.Internal(err)
	}
	return nil
}

// RegisterGuest creates a guest account: a numeric localpart, no password, no UIA.
func (a *Service) RegisterGuest(ctx context.Context, deviceName *string) (Login, error) {
	if !a.cfg.GuestsEnabled {
		return Login{}, &mxerr.Error{Status: 403, Code: "M_UNKNOWN", Message: "Guest access is disabled"}
	}
	var out Login
	err := a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		n, err := tx.NextGuestNumber(ctx)
		if err != nil {
			return DeviceChange{}, err
		}
		localpart := strconv.FormatInt(n, 10)
		userID := a.UserID(localpart)
		if err := tx.CreateUser(ctx, storage.User{ID: userID, IsGuest: true, DisplayName: &localpart, CreatedTS: time.Now().UnixMilli()}); err != nil {
			return DeviceChange{}, err
		}
		out, err = a.createLogin(ctx, tx, userID, "", deviceName)
		return DeviceChange{UserID: userID, Created: []string{out.DeviceID}}, err
	})
	if err != nil {
		return Login{}, mxerr.Internal(err)
	}
	a.log.Debug("guest registered", "user", out.UserID)
	return out, nil
}

// registerParams is what the first request of a registration's UIA session asked for,
// so that later requests of the session need only the auth (as in Synapse).
type registerParams struct {
	Username     string  `json:"username,omitempty"`
	PasswordHash string  `json:"password_hash,omitempty"`
	DeviceID     string  `json:"device_id,omitempty"`
	DeviceName   *string `json:"initial_device_display_name,omitempty"`
	InhibitLogin bool    `json:"inhibit_login,omitempty"`
}

// Register handles POST /register for kind=user, including guest upgrades. Repeating a
// completed registration session answers as the first time did, or is refused; it never
// logs in again.
func (a *Service) Register(ctx context.Context, req RegisterRequest) (Login, error) {
	if !a.cfg.OpenRegistration {
		return Login{}, mxerr.Forbidden("Registration has been disabled")
	}
	var remembered registerParams
	if req.Auth != nil && req.Auth.Session != "" {
		if rec, err := a.store.UIASession(ctx, req.Auth.Session); err == nil && rec.Op == "register" {
			json.Unmarshal(rec.Params, &remembered)
			if rec.Result != "" {
				return a.repeatRegistration(ctx, req.Auth.Session, rec.Result, remembered)
			}
		}
	}
	if req.Username == "" {
		req.Username = remembered.Username
	}
	if req.DeviceID == "" {
		req.DeviceID = remembered.DeviceID
	}
	if req.InitialDeviceDisplayName == nil {
		req.InitialDeviceDisplayName = remembered.DeviceName
	}
	req.InhibitLogin = req.InhibitLogin || remembered.InhibitLogin
	// A guest upgrading to a full account keeps its user ID.
	var guest *Session
	if req.GuestAccessToken != "" {
		s, err := a.SessionForToken(ctx, req.GuestAccessToken)
		if err != nil || !s.IsGuest {
			return Login{}, mxerr.Forbidden("Invalid guest access token")
		}
		guest = s
	}
	// Synapse lower-cases requested usernames rather than refusing capitals.
	localpart := strings.ToLower(req.Username)
	if guest != nil {
		if localpart == "" {
			localpart = a.LocalpartOf(guest.UserID)
		}
		if a.UserID(localpart) != guest.UserID {
			return Login{}, mxerr.Forbidden("Cannot register taken user ID without valid guest credentials for that user")
		}
	} else if localpart != "" {
		if err := a.Available(ctx, localpart); err != nil {
			return Login{}, err
		}
	}
	hash := remembered.PasswordHash
	if req.Password != nil {
		if len(*req.Password) > maxPasswordLen {
			return Login{}, mxerr.InvalidParam("Password too long")
		}
		h, err := bcrypt.GenerateFromPassword([]byte(*req.Password), a.cfg.BcryptCost)
		if err != nil {
			return Login{}, mxerr.Internal(err)
		}
		hash = string(h)
	}
	params, _ := json.Marshal(registerParams{Username: localpart, PasswordHash: hash, DeviceID: req.DeviceID,
		DeviceName: req.InitialDeviceDisplayName, InhibitLogin: req.InhibitLogin})
	uia, err := a.requireUIA(ctx, req.Auth, [][]string{{"m.login.dummy"}}, "", "register", params)
	if err != nil {
		return Login{}, err
	}
	if hash == "" {
		return Login{}, mxerr.MissingParam("Missing params: password")
	}
	var out Login
	var userID string
	err = a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		var change DeviceChange
		if guest != nil {
			userID = guest.UserID
			if err := tx.UpgradeGuest(ctx, userID, hash); err != nil {
				return change, err
			}
			// The guest's old devices and tokens stop working.
			deleted, err := tx.DeleteDevices(ctx, userID, nil, "")
			if err != nil {
				return change, err
			}
			change.Deleted = deleted
			if err := notifyRevoked(ctx, tx, userID, nil); err != nil {
				return change, err
			}
		} else {
			for i := 0; localpart == "" && i < 10; i++ {
				// A generated name must not fall in an application service's namespace.
				localpart = "u" + strings.ToLower(RandomDeviceID())
				if a.checkNotExclusive(a.UserID(localpart), nil) != nil {
					localpart = ""
				}
			}
			if localpart == "" {
				return change, mxerr.Exclusive(400, "Every generated user ID is reserved by an application service: choose a username")
			}
			userID = a.UserID(localpart)
			if err := tx.CreateUser(ctx, storage.User{ID: userID, PasswordHash: hash, DisplayName: &localpart, CreatedTS: time.Now().UnixMilli()}); err != nil {
				return change, err
			}
		}
		change.UserID = userID
		if req.InhibitLogin {
			out = Login{UserID: userID, HomeServer: a.cfg.ServerName}
			return change, nil
		}
		var err error
		out, err = a.createLogin(ctx, tx, userID, req.DeviceID, req.InitialDeviceDisplayName)
		change.Created = []string{out.DeviceID}
		return change, err
	})
	if errors.Is(err, storage.ErrConflict) {
		return Login{}, mxerr.UserInUse("User ID already taken.")
	} else if errors.Is(err, storage.ErrNotFound) && guest != nil {
		return Login{}, mxerr.Forbidden("Guest account was already upgraded")
	} else if e, ok := mxerr.As(err); ok {
		return Login{}, e
	} else if err != nil {
		return Login{}, mxerr.Internal(err)
	}
	a.finishUIA(ctx, uia, userID)
	if !req.InhibitLogin {
		a.answers.put(uia.session, out)
	}
	if guest != nil {
		a.cache.revokeWhere(func(s *Session) bool { return s.UserID == userID && s.IsGuest })
		a.log.Info("guest upgraded", "user", userID)
	} else {
		a.log.Info("user registered", "user", userID)
	}
	return out, nil
}

// repeatRegistration answers a repeated, completed registration (a client retrying after
// a lost answer): the first answer again, while this node remembers it and its token
// still works. Anything else is refused: a session ID must never be a way to log in.
func (a *Service) repeatRegistration(ctx context.Context, session, userID string, p registerParams) (Login, error) {
	if p.InhibitLogin {
		return Login{UserID: userID, HomeServer: a.cfg.ServerName}, nil
	}
	if first, ok := a.answers.get(session); ok && first.UserID == userID {
		if s, err := a.SessionForToken(ctx, first.AccessToken); err == nil && s.UserID == userID {
			return first, nil
		}
	}
	return Login{}, mxerr.Forbidden("This registration has already completed: log in with the account's password")
}

// createLogin makes a device (or reuses deviceID, revoking its old tokens) and a token.
func (a *Service) createLogin(ctx context.Context, tx storage.Tx, userID, deviceID string, displayName *string) (Login, error) {
	if deviceID == "" {
		deviceID = RandomDeviceID()
	} else if deleted, err := tx.DeleteDevices(ctx, userID, []string{deviceID}, ""); err != nil {
		return Login{}, err
	} else if err := notifyRevoked(ctx, tx, userID, deleted); err != nil {
		return Login{}, err
	}
	now := time.Now().UnixMilli()
	if err := tx.CreateDevice(ctx, storage.Device{UserID: userID, ID: deviceID, DisplayName: displayName, LastSeenTS: now, CreatedTS: now}); err != nil {
		return Login{}, err
	}
	token, hash := NewToken()
	if err := tx.CreateToken(ctx, hash, userID, deviceID); err != nil {
		return Login{}, err
	}
	return Login{UserID: userID, AccessToken: token, DeviceID: deviceID, HomeServer: a.cfg.ServerName}, nil
}

// LoginRequest is the body of POST /login.
type LoginRequest struct {
	Type                     string          `json:"type"`
	Identifier               *UserIdentifier `json:"identifier"`
	User                     string          `json:"user"`
	Password                 string          `json:"password"`
	DeviceID                 string          `json:"device_id"`
	InitialDeviceDisplayName *string         `json:"initial_device_display_name"`
}

// resolveUser turns an identifier (localpart or full user ID) into a local user ID.
func (a *Service) resolveUser(ident *UserIdentifier, legacyUser string) (string, error) {
	user := legacyUser
	if ident != nil {
		if ident.Type != "m.id.user" {
			return "", mxerr.Unknown("Unknown identifier type")
		}
		user = ident.User
	}
	if user == "" {
		return "", mxerr.MissingParam("Missing user identifier")
	}
	if strings.HasPrefix(user, "@") {
		return strings.ToLower(user), nil
	}
	return a.UserID(strings.ToLower(user)), nil
}

// checkPassword verifies a user's password; every failure is the same 403.
func (a *Service) checkPassword(ctx context.Context, userID, password string) error {
	u, err := a.store.User(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && u.PasswordHash == "") || len(password) > maxPasswordLen {
		return mxerr.Forbidden("Invalid username or password")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	if u.Deactivated {
		return mxerr.UserDeactivated()
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return mxerr.Forbidden("Invalid username or password")
	}
	return nil
}

// Login handles POST /login with m.login.password.
func (a *Service) Login(ctx context.Context, req LoginRequest) (Login, error) {
	if req.Type != "m.login.password" {
		return Login{}, mxerr.Unknown("Unknown login type " + strconv.Quote(req.Type))
	}
	userID, err := a.resolveUser(req.Identifier, req.User)
	if err != nil {
		return Login{}, err
	}
	if err := a.checkPassword(ctx, userID, req.Password); err != nil {
		return Login{}, err
	}
	var out Login
	err = a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		var err error
		out, err = a.createLogin(ctx, tx, userID, req.DeviceID, req.InitialDeviceDisplayName)
		return DeviceChange{UserID: userID, Created: []string{out.DeviceID}}, err
	})
	if err != nil {
		return Login{}, mxerr.Internal(err)
	}
	if req.DeviceID != "" {
		a.cache.revokeWhere(func(s *Session) bool { return s.UserID == userID && s.DeviceID == req.DeviceID })
	}
	return out, nil
}

// Logout ends the session and deletes its device.
func (a *Service) Logout(ctx context.Context, s *Session) error {
	return a.DeleteDevices(ctx, s.UserID, []string{s.DeviceID})
}

// LogoutAll ends every session of the user, its unfinished and completed UIA sessions
// included.
func (a *Service) LogoutAll(ctx context.Context, s *Session) error {
	if err := a.DeleteDevices(ctx, s.UserID, nil); err != nil {
		return err
	}
	return a.endUIASessions(ctx, s.UserID)
}

// endUIASessions forgets every UIA session that acted for the user (after a password
// change, a logout from every device or a deactivation).
func (a *Service) endUIASessions(ctx context.Context, userID string) error {
	a.answers.dropUser(userID)
	if err := a.store.Write(ctx, func(tx storage.Tx) error { return tx.DeleteUserUIASessions(ctx, userID) }); err != nil {
		return mxerr.Internal(err)
	}
	return nil
}

// DeleteDevices removes devices (all of the user's when ids is nil) and revokes their tokens.
func (a *Service) DeleteDevices(ctx context.Context, userID string, ids []string) error {
	var deleted []string
	err := a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		var err error
		if deleted, err = tx.DeleteDevices(ctx, userID, ids, ""); err != nil {
			return DeviceChange{}, err
		}
		return DeviceChange{UserID: userID, Deleted: deleted}, notifyRevoked(ctx, tx, userID, deleted)
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	gone := make(map[string]bool, len(deleted))
	for _, d := range deleted {
		gone[d] = true
	}
	a.cache.revokeWhere(func(s *Session) bool { return s.UserID == userID && (ids == nil || gone[s.DeviceID]) })
	return nil
}

// ChangePasswordRequest is the body of POST /account/password.
type ChangePasswordRequest struct {
	NewPassword   *string   `json:"new_password"`
	LogoutDevices *bool     `json:"logout_devices"`
	Auth          *AuthDict `json:"auth"`
}

// ChangePassword sets a new password after UIA with the old one; by default other
// devices are logged out.
func (a *Service) ChangePassword(ctx context.Context, s *Session, req ChangePasswordRequest) error {
	uia, err := a.requireUIA(ctx, req.Auth, [][]string{{"m.login.password"}}, s.UserID, "password", nil)
	if err != nil {
		return err
	}
	defer a.finishUIA(ctx, uia, "")
	if req.NewPassword == nil || *req.NewPassword == "" {
		return mxerr.MissingParam("Missing params: new_password")
	}
	if len(*req.NewPassword) > maxPasswordLen {
		return mxerr.InvalidParam("Password too long")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(*req.NewPassword), a.cfg.BcryptCost)
	if err != nil {
		return mxerr.Internal(err)
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	err = a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		if err := tx.UpdatePassword(ctx, s.UserID, string(hash)); err != nil {
			return DeviceChange{}, err
		}
		if logout {
			deleted, err := tx.DeleteDevices(ctx, s.UserID, nil, s.DeviceID)
			if err != nil {
				return DeviceChange{}, err
			}
			return DeviceChange{UserID: s.UserID, Deleted: deleted}, notifyRevoked(ctx, tx, s.UserID, deleted)
		}
		return DeviceChange{}, nil
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	if logout {
		a.cache.revokeWhere(func(o *Session) bool { return o.UserID == s.UserID && o.DeviceID != s.DeviceID })
	}
	return a.endUIASessions(ctx, s.UserID)
}

// RequirePassword runs UIA with m.login.password for a sensitive operation (device
// deletion, deactivation); op names it, so one session cannot authorise another.
func (a *Service) RequirePassword(ctx context.Context, s *Session, d *AuthDict, op string) error {
	uia, err := a.requireUIA(ctx, d, [][]string{{"m.login.password"}}, s.UserID, op, nil)
	if err == nil {
		a.finishUIA(ctx, uia, "")
	}
	return err
}

// Deactivate disables the account and revokes every session.
func (a *Service) Deactivate(ctx context.Context, userID string) error {
	err := a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		deleted, err := tx.DeleteDevices(ctx, userID, nil, "")
		if err != nil {
			return DeviceChange{}, err
		}
		if err := notifyRevoked(ctx, tx, userID, nil); err != nil {
			return DeviceChange{}, err
		}
		if err := tx.DeleteUserUIASessions(ctx, userID); err != nil {
			return DeviceChange{}, err
		}
		return DeviceChange{UserID: userID, Deleted: deleted}, tx.Deactivate(ctx, userID)
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	a.answers.dropUser(userID)
	a.cache.revokeWhere(func(s *Session) bool { return s.UserID == userID })
	return nil
}

// uiaResult is a completed user-interactive auth.
type uiaResult struct {
	session string
	rec     storage.UIASession
}

// requireUIA enforces user-interactive auth: without a completed flow it answers 401 with
// the flows and a session ID. userID, when set, is whose password m.login.password checks;
// op names the operation, and a session may only complete the operation it started for.
// params, stored with a new session, let later requests of the session omit them.
func (a *Service) requireUIA(ctx context.Context, d *AuthDict, flows [][]string, userID, op string, params []byte) (uiaResult, error) {
	flowList := make([]map[string]any, len(flows))
	for i, f := range flows {
		flowList[i] = map[string]any{"stages": f}
	}
	challenge := func(session string, completed []string, cause *mxerr.Error) error {
		if completed == nil {
			completed = []string{}
		}
		e := &mxerr.Error{Status: 401, Extra: map[string]any{"flows": flowList, "params": map[string]any{}, "session": session, "completed": completed}}
		if cause != nil {
			e.Code, e.Message = cause.Code, cause.Message
		}
		return e
	}
	res := uiaResult{rec: storage.UIASession{Op: op, Params: params, UserID: userID}}
	save := func() error {
		if err := a.store.Write(ctx, func(tx storage.Tx) error { return tx.PutUIASession(ctx, res.session, res.rec) }); err != nil {
			return mxerr.Internal(err)
		}
		return nil
	}
	if d != nil && d.Session != "" {
		rec, err := a.store.UIASession(ctx, d.Session)
		if errors.Is(err, storage.ErrNotFound) {
			return res, mxerr.Unknown("Unknown UIA session " + strconv.Quote(d.Session))
		} else if err != nil {
			return res, mxerr.Internal(err)
		}
		if rec.Op != op {
			return res, mxerr.Forbidden("Requested operation has changed during the UI authentication session")
		}
		res.session, res.rec = d.Session, rec
	}
	if d == nil || d.Type == "" {
		if res.session == "" {
			res.session = RandomID(18)
			if err := save(); err != nil {
				return res, err
			}
		}
		return res, challenge(res.session, res.rec.Completed, nil)
	}
	if res.session == "" {
		res.session = RandomID(18)
	}
	if !contains(flowStages(flows), d.Type) {
		return res, challenge(res.session, res.rec.Completed, mxerr.Unknown(fmt.Sprintf("Auth type %q is not offered", d.Type)))
	}
	switch d.Type {
	case "m.login.dummy":
	case "m.login.password":
		who, err := a.resolveUser(d.Identifier, d.User)
		if err != nil {
			return res, challenge(res.session, res.rec.Completed, mxerr.Forbidden("Missing user identifier"))
		}
		if userID != "" && who != userID {
			// Someone else's credentials prove nothing about this account.
			return res, mxerr.Forbidden("Invalid auth: the credentials are for another user")
		}
		if err := a.checkPassword(ctx, who, d.Password); err != nil {
			e, _ := mxerr.As(err)
			return res, challenge(res.session, res.rec.Completed, e)
		}
	}
	if !contains(res.rec.Completed, d.Type) {
		res.rec.Completed = append(res.rec.Completed, d.Type)
	}
	for _, f := range flows {
		if subset(f, res.rec.Completed) {
			return res, nil
		}
	}
	if err := save(); err != nil {
		return res, err
	}
	return res, challenge(res.session, res.rec.Completed, nil)
}

// finishUIA records a completed operation's result in its session (registration answers a
// repeated request of the session with the same account) or forgets the session.
func (a *Service) finishUIA(ctx context.Context, res uiaResult, result string) {
	a.store.Write(ctx, func(tx storage.Tx) error {
		if result == "" {
			return tx.DeleteUIASession(ctx, res.session)
		}
		res.rec.Result, res.rec.UserID = result, result
		return tx.PutUIASession(ctx, res.session, res.rec)
	})
}

func flowStages(flows [][]string) []string {
	var out []string
	for _, f := range flows {
		out = append(out, f...)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func subset(need, have []string) bool {
	for _, n := range need {
		if !contains(have, n) {
			return false
		}
	}
	return true
}

// Device is one login of a user, as stored.
type Device = storage.Device

// Devices lists the user's devices.
func (a *Service) Devices(ctx context.Context, userID string) ([]Device, error) {
	ds, err := a.store.Devices(ctx, userID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	return ds, nil
}

// Device returns one of the user's devices (404 M_NOT_FOUND if it has no such device).
func (a *Service) Device(ctx context.Context, userID, deviceID string) (Device, error) {
	d, err := a.store.Device(ctx, userID, deviceID)
	if errors.Is(err, storage.ErrNotFound) {
		return d, mxerr.NotFound("Unknown device")
	} else if err != nil {
		return d, mxerr.Internal(err)
	}
	return d, nil
}

// UpdateDevice renames a device.
func (a *Service) UpdateDevice(ctx context.Context, userID, deviceID string, displayName *string) error {
	err := a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		return DeviceChange{UserID: userID, Renamed: []string{deviceID}}, tx.UpdateDevice(ctx, userID, deviceID, displayName)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Unknown device")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	return nil
}
