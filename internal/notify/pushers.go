package notify

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// Pusher limits: Synapse's (and the spec's) lengths of app_id and pushkey, and bounds of
// Porthole's own on the rest.
const (
	MaxAppID          = 64
	MaxPushKey        = 512
	maxPusherText     = 512
	maxPusherData     = 4096
	MaxPushersPerUser = 100
	// notifyPath is the only path a gateway URL may have (as Synapse requires).
	notifyPath = "/_matrix/push/v1/notify"
)

// PushersChannel carries "a user's pushers changed" between processes sharing PostgreSQL.
const PushersChannel = "porthole_pushers"

// PusherJSON is a pusher as GET /pushers gives it.
type PusherJSON struct {
	PushKey           string         `json:"pushkey"`
	Kind              string         `json:"kind"`
	AppID             string         `json:"app_id"`
	AppDisplayName    string         `json:"app_display_name"`
	DeviceDisplayName string         `json:"device_display_name"`
	ProfileTag        string         `json:"profile_tag,omitempty"`
	Lang              string         `json:"lang"`
	Data              jsontext.Value `json:"data"`
}

// Pushers returns the user's pushers.
func (s *Service) Pushers(ctx context.Context, userID string) ([]PusherJSON, error) {
	ps, err := s.store.Pushers(ctx, userID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	out := make([]PusherJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, PusherJSON{PushKey: p.PushKey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: jsontext.Value(p.Data)})
	}
	return out, nil
}

// SetPusher applies a POST /pushers/set body for the user's device: creates or updates an
// http pusher, or deletes one (kind null). Nothing is stored unless the whole body is valid.
func (s *Service) SetPusher(ctx context.Context, userID, deviceID string, body []byte) error {
	var fields map[string]jsontext.Value
	if err := json.Unmarshal(body, &fields); err != nil {
		return mxerr.BadJSON("The body must be a JSON object")
	}
	str := func(name string) (string, bool, error) {
		v, ok := fields[name]
		if !ok {
			return "", false, nil
		}
		var out string
		if v.Kind() != '"' || json.Unmarshal(v, &out) != nil {
			return "", true, mxerr.BadJSON("'" + name + "' must be a string")
		}
		return out, true, nil
	}
	kindRaw, hasKind := fields["kind"]
	appID, hasApp, err := str("app_id")
	if err != nil {
		return err
	}
	pushKey, hasKey, err := str("pushkey")
	if err != nil {
		return err
	}
	if hasKind && kindRaw.Kind() == 'n' {
		if missing := missingOf(map[string]bool{"app_id": hasApp, "pushkey": hasKey}); missing != "" {
			return mxerr.MissingParam("Missing parameters: " + missing)
		}
		return s.deletePusher(ctx, userID, appID, pushKey)
	}
	p := storage.Pusher{UserID: userID, DeviceID: deviceID, AppID: appID, PushKey: pushKey, PushKeyTS: time.Now().UnixMilli()}
	present := map[string]bool{"kind": hasKind, "app_id": hasApp, "pushkey": hasKey}
	for name, dst := range map[string]*string{"app_display_name": &p.AppDisplayName, "device_display_name": &p.DeviceDisplayName, "lang": &p.Lang} {
		v, ok, err := str(name)
		if err != nil {
			return err
		}
		*dst, present[name] = v, ok
	}
	_, present["data"] = fields["data"]
	if missing := missingOf(present); missing != "" {
		return mxerr.MissingParam("Missing parameters: " + missing)
	}
	if p.ProfileTag, _, err = str("profile_tag"); err != nil {
		return err
	}
	if kindRaw.Kind() != '"' || json.Unmarshal(kindRaw, &p.Kind) != nil {
		return mxerr.BadJSON("'kind' must be a string or null")
	}
	appendMode := false
	if v, ok := fields["append"]; ok {
		if v.Kind() != 't' && v.Kind() != 'f' {
			return mxerr.BadJSON("'append' must be a boolean")
		}
		appendMode = v.Kind() == 't'
	}
	switch {
	case len(p.AppID) == 0 || len(p.PushKey) == 0:
		return mxerr.InvalidParam("app_id and pushkey must not be empty")
	case len(p.AppID) > MaxAppID:
		return mxerr.InvalidParam("app_id must be at most 64 bytes")
	case len(p.PushKey) > MaxPushKey:
		return mxerr.InvalidParam("pushkey must be at most 512 bytes")
	case len(p.AppDisplayName) > maxPusherText || len(p.DeviceDisplayName) > maxPusherText || len(p.Lang) > maxPusherText || len(p.ProfileTag) > maxPusherText:
		return mxerr.InvalidParam("Display names, lang and profile_tag must be at most 512 bytes")
	}
	switch p.Kind {
	case "http":
	case "email":
		// Synapse's answer when the address is not one of the user's: Porthole keeps no
		// third-party identifiers, so no address is.
		return &mxerr.Error{Status: 400, Code: "M_THREEPID_NOT_FOUND", Message: "Email not found"}
	default:
		return mxerr.InvalidParam("Unknown pusher kind " + strconv.Quote(p.Kind) + ": only http pushers are supported")
	}
	data, err := validateData(fields["data"])
	if err != nil {
		return err
	}
	p.Data = data
	return s.putPusher(ctx, p, appendMode)
}

func missingOf(present map[string]bool) string {
	var missing []string
	for name, ok := range present {
		if !ok {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return strings.Join(missing, ", ")
}

// validateData checks an http pusher's data: an object with an http(s) url whose path is
// /_matrix/push/v1/notify, and a string format if any. It returns the canonical JSON.
func validateData(raw jsontext.Value) ([]byte, error) {
	if raw.Kind() != '{' {
		return nil, mxerr.BadJSON("'data' must be an object")
	}
	if len(raw) > maxPusherData {
		return nil, mxerr.InvalidParam("'data' must be at most 4096 bytes")
	}
	var d map[string]jsontext.Value
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, mxerr.BadJSON("'data' must be an object")
	}
	rawURL, ok := d["url"]
	if !ok {
		return nil, mxerr.MissingParam("Config Error: 'url' required in data for HTTP pusher")
	}
	var s string
	if rawURL.Kind() != '"' || json.Unmarshal(rawURL, &s) != nil {
		return nil, mxerr.BadJSON("Config Error: 'url' must be a string")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return nil, mxerr.InvalidParam("Config Error: 'url' must be an http or https URL")
	case u.Path != notifyPath:
		return nil, mxerr.InvalidParam("Config Error: 'url' must have a path of '" + notifyPath + "'")
	case u.User != nil:
		return nil, mxerr.InvalidParam("Config Error: 'url' must not carry credentials")
	}
	if f, ok := d["format"]; ok && f.Kind() != '"' {
		return nil, mxerr.BadJSON("'format' must be a string")
	}
	c := raw.Clone()
	if err := c.Canonicalize(); err != nil {
		return nil, mxerr.BadJSON("Invalid 'data': " + err.Error())
	}
	return c, nil
}

func (s *Service) putPusher(ctx context.Context, p storage.Pusher, appendMode bool) error {
	affected := []string{p.UserID}
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		existing, err := tx.Pushers(ctx, p.UserID)
		if err != nil {
			return err
		}
		if len(existing) >= MaxPushersPerUser && !slices.ContainsFunc(existing, func(e storage.Pusher) bool {
			return e.AppID == p.AppID && e.PushKey == p.PushKey
		}) {
			return mxerr.Forbidden("A user may have at most " + strconv.Itoa(MaxPushersPerUser) + " pushers")
		}
		if !appendMode {
			// Without append, this pushkey now belongs to this user alone (the spec).
			gone, err := tx.DeletePushers(ctx, p.AppID, p.PushKey, "", p.UserID)
			if err != nil {
				return err
			}
			for _, g := range gone {
				if err := s.forgetPusherQueue(ctx, tx, g.ID); err != nil {
					return err
				}
				affected = append(affected, g.UserID)
			}
		}
		if _, err := tx.PutPusher(ctx, p); err != nil {
			return err
		}
		return s.announcePushers(ctx, tx, affected)
	})
	if err != nil {
		if _, ok := mxerr.As(err); ok {
			return err
		}
		return mxerr.Internal(err)
	}
	s.log.Info("pusher set", "user", p.UserID, "app_id", p.AppID, "device", p.DeviceID)
	return s.reloadPushers(ctx, affected...)
}

func (s *Service) deletePusher(ctx context.Context, userID, appID, pushKey string) error {
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		gone, err := tx.DeletePushers(ctx, appID, pushKey, userID, "")
		if err != nil {
			return err
		}
		for _, g := range gone {
			if err := s.forgetPusherQueue(ctx, tx, g.ID); err != nil {
				return err
			}
		}
		return s.announcePushers(ctx, tx, []string{userID})
	})
	if err != nil {
		return mxerr.Internal(err)
	}
	return s.reloadPushers(ctx, userID)
}

// forgetPusherQueue drops what was queued for a deleted pusher.
func (s *Service) forgetPusherQueue(ctx context.Context, tx storage.Tx, id int64) error {
	if s.ob == nil {
		return nil
	}
	return s.ob.Purge(ctx, tx, PushKind, strconv.FormatInt(id, 10))
}

// announcePushers tells the other nodes to reload these users' pushers.
func (s *Service) announcePushers(ctx context.Context, tx storage.Tx, users []string) error {
	for _, u := range users {
		if err := tx.Notify(ctx, PushersChannel, u); err != nil {
			return err
		}
	}
	return nil
}

// pusherIDs returns the IDs of a user's pushers (from memory).
func (s *Service) pusherIDs(userID string) []int64 {
	s.pushersMu.RLock()
	defer s.pushersMu.RUnlock()
	return s.pushers[userID]
}

// LoadPushers reads every pusher into memory (at start, and after a lost connection to
// the other nodes' notifications).
func (s *Service) LoadPushers(ctx context.Context) error {
	ps, err := s.store.Pushers(ctx, "")
	if err != nil {
		return err
	}
	m := map[string][]int64{}
	for _, p := range ps {
		m[p.UserID] = append(m[p.UserID], p.ID)
	}
	s.pushersMu.Lock()
	s.pushers = m
	s.pushersMu.Unlock()
	return nil
}

// reloadPushers reads some users' pushers again.
func (s *Service) reloadPushers(ctx context.Context, users ...string) error {
	for _, u := range users {
		ps, err := s.store.Pushers(ctx, u)
		if err != nil {
			return mxerr.Internal(err)
		}
		ids := make([]int64, len(ps))
		for i, p := range ps {
			ids[i] = p.ID
		}
		s.pushersMu.Lock()
		if len(ids) == 0 {
			delete(s.pushers, u)
		} else {
			s.pushers[u] = ids
		}
		s.pushersMu.Unlock()
	}
	return nil
}

// HandlePushersNotification reacts to another node's pusher change.
func (s *Service) HandlePushersNotification(ctx context.Context, userID string) {
	if err := s.reloadPushers(ctx, userID); err != nil {
		s.log.Warn("reloading pushers", "user", userID, "err", err)
	}
}
