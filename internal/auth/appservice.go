package auth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"porthole/internal/appservice"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// An application service authenticates with its as_token and acts as its sender, or as
// any registered user of its namespaces named by ?user_id= (and as one of that user's
// devices with ?device_id=, or MSC3202's org.matrix.msc3202.device_id).

// AppServiceLoginType is the registration and login type of application services.
const AppServiceLoginType = "m.login.application_service"

// AppServiceOf returns the application service whose as_token the request carries, or
// nil (rate limits are waived before authentication for services that ask).
func (a *Service) AppServiceOf(r *http.Request) *appservice.Registration {
	if a.cfg.AppServices == nil {
		return nil
	}
	tok, ok := TokenFromRequest(r)
	if !ok {
		return nil
	}
	return a.cfg.AppServices.ByToken(tok)
}

// appServiceSession is the session of a request made with reg's as_token.
func (a *Service) appServiceSession(ctx context.Context, r *http.Request, reg *appservice.Registration) (*Session, error) {
	q := r.URL.Query()
	userID := q.Get("user_id")
	if userID == "" {
		userID = reg.Sender
	}
	if !reg.InterestedInUser(userID) || a.LocalpartOf(userID) == "" {
		return nil, mxerr.Forbidden("Application service cannot masquerade as this user (" + userID + ")")
	}
	if userID != reg.Sender {
		u, err := a.store.User(ctx, userID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.Forbidden("Application service has not registered this user (" + userID + ")")
		} else if err != nil {
			return nil, mxerr.Internal(err)
		}
		if u.Deactivated {
			return nil, mxerr.UserDeactivated()
		}
	}
	s := &Session{UserID: userID, AppService: reg}
	if ts := q.Get("ts"); ts != "" {
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || n < 0 || n > 1<<53-1 {
			return nil, mxerr.InvalidParam("ts must be a timestamp in milliseconds")
		}
		s.Timestamp = n
	}
	device := q.Get("device_id")
	if device == "" {
		device = q.Get("org.matrix.msc3202.device_id")
	}
	if device != "" {
		if _, err := a.store.Device(ctx, userID, device); errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.UnknownDevice("Unknown device " + device + " of " + userID)
		} else if err != nil {
			return nil, mxerr.Internal(err)
		}
		s.DeviceID = device
	}
	return s, nil
}

// checkNotExclusive refuses a user ID that an application service other than reg claims
// for itself.
func (a *Service) checkNotExclusive(userID string, reg *appservice.Registration) error {
	if a.cfg.AppServices.ExclusiveUserOwner(userID, reg) != nil {
		return mxerr.Exclusive(http.StatusBadRequest, "This user ID is reserved by an application service")
	}
	return nil
}

// RegisterAppServiceUser registers a user of a service's namespaces, without a password
// (POST /register with type m.login.application_service). Unless inhibitLogin it logs in
// too, as the legacy login API allows.
func (a *Service) RegisterAppServiceUser(ctx context.Context, reg *appservice.Registration, localpart string, inhibitLogin bool, deviceID string, deviceName *string) (Login, error) {
	if localpart == "" {
		return Login{}, mxerr.MissingParam("Desired username is missing")
	}
	if len(localpart) > 255 || strings.ContainsAny(localpart, ":@") {
		return Login{}, mxerr.InvalidUsername("Invalid username")
	}
	userID := a.UserID(localpart)
	if _, _, err := id.UserID(userID).ParseAndValidateRelaxed(); err != nil || len(userID) > 255 {
		return Login{}, mxerr.InvalidUsername("Invalid username")
	}
	if !reg.InterestedInUser(userID) {
		return Login{}, mxerr.Exclusive(http.StatusBadRequest, "Invalid user localpart for this application service")
	}
	if err := a.checkNotExclusive(userID, reg); err != nil {
		return Login{}, err
	}
	out := Login{UserID: userID, HomeServer: a.cfg.ServerName}
	err := a.deviceWrite(ctx, func(tx storage.Tx) (DeviceChange, error) {
		if err := tx.CreateUser(ctx, storage.User{ID: userID, DisplayName: &localpart, CreatedTS: time.Now().UnixMilli()}); err != nil {
			return DeviceChange{}, err
		}
		if inhibitLogin {
			return DeviceChange{}, nil
		}
		var err error
		out, err = a.createLogin(ctx, tx, userID, deviceID, deviceName)
		return DeviceChange{UserID: userID, Created: []string{out.DeviceID}}, err
	})
	if errors.Is(err, storage.ErrConflict) {
		return Login{}, mxerr.UserInUse("User ID already taken.")
	} else if err != nil {
		return Login{}, mxerr.Internal(err)
	}
	a.log.Info("application service registered a user", "appservice", reg.ID, "user", userID)
	return out, nil
}

// LoginAppService logs a service in as one of its users (POST /login with type
// m.login.application_service): a new device and access token.
func (a *Service) LoginAppService(ctx context.Context, reg *appservice.Registration, req LoginRequest) (Login, error) {
	if req.Identifier == nil || req.Identifier.Type != "m.id.user" || req.Identifier.User == "" {
		if req.User == "" {
			return Login{}, mxerr.InvalidParam("Invalid identifier in login submission")
		}
		req.Identifier = &UserIdentifier{Type: "m.id.user", User: req.User}
	}
	userID := req.Identifier.User
	if !strings.HasPrefix(userID, "@") {
		userID = a.UserID(userID)
	}
	if !reg.InterestedInUser(userID) {
		return Login{}, mxerr.Exclusive(http.StatusForbidden, "This user is not in the application service's namespaces")
	}
	u, err := a.store.User(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return Login{}, mxerr.Forbidden("Invalid username")
	} else if err != nil {
		return Login{}, mxerr.Internal(err)
	}
	if u.Deactivated {
		return Login{}, mxerr.UserDeactivated()
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
