package client

import (
	"encoding/json/jsontext"
	"net/http"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/push"
)

// pushRulePath is a parsed /pushrules/… path: scope, kind, rule ID and attribute, each ""
// when the path stops before it. trailing is true when the path ends with a slash after
// the last part given (the spec's form for listing a scope or a kind).
type pushRulePath struct {
	parts    []string
	trailing bool
}

func parsePushRulePath(rest string) pushRulePath {
	trailing := strings.HasSuffix(rest, "/") || rest == ""
	rest = strings.TrimSuffix(rest, "/")
	var parts []string
	if rest != "" {
		parts = strings.Split(rest, "/")
	}
	return pushRulePath{parts: parts, trailing: trailing}
}

// target checks the scope and kind; it wants at least want parts (scope, kind, rule ID,
// attribute).
func (p pushRulePath) target(want int) (kind, ruleID, attr string, err error) {
	if len(p.parts) == 0 || p.parts[0] != "global" {
		return "", "", "", mxerr.InvalidParam("Unknown push rule scope; only 'global' exists")
	}
	if len(p.parts) < 2 || p.parts[1] == "" {
		return "", "", "", mxerr.InvalidParam("Missing push rule kind")
	}
	kind = p.parts[1]
	if (&push.Ruleset{}).List(kind) == nil {
		return "", "", "", mxerr.InvalidParam("Unknown push rule kind " + kind)
	}
	if want >= 3 {
		if len(p.parts) < 3 || p.parts[2] == "" {
			return "", "", "", mxerr.InvalidParam("Missing push rule ID")
		}
		ruleID = p.parts[2]
	}
	if len(p.parts) > 4 {
		return "", "", "", mxerr.InvalidParam("Push rule IDs may not contain slashes")
	}
	if len(p.parts) == 4 {
		attr = p.parts[3]
		if attr != "enabled" && attr != "actions" {
			return "", "", "", mxerr.InvalidParam("Unknown push rule attribute " + attr)
		}
	}
	return kind, ruleID, attr, nil
}

// notAnEndpoint answers a path that looks like an endpoint but is not one.
func notAnEndpoint(http.ResponseWriter, *http.Request, *auth.Session) error {
	return mxerr.Unrecognized("Unrecognized request")
}

func (a *API) loadPushRules(r *http.Request, s *auth.Session) (push.Ruleset, error) {
	stored, err := a.eph.AccountData(r.Context(), s.UserID, "", push.AccountDataType)
	if e, ok := mxerr.As(err); ok && e.Code == "M_NOT_FOUND" {
		stored = nil
	} else if err != nil {
		return push.Ruleset{}, err
	}
	return push.Load(stored, s.UserID), nil
}

// getPushRules serves GET /pushrules/, /pushrules/global/, /pushrules/global/{kind}/,
// /pushrules/global/{kind}/{ruleId} and …/{ruleId}/enabled|actions.
func (a *API) getPushRules(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	p := parsePushRulePath(r.PathValue("path"))
	rs, err := a.loadPushRules(r, s)
	if err != nil {
		return err
	}
	switch {
	case len(p.parts) == 0:
		return httpx.WriteJSON(w, 200, push.Document{Global: rs})
	case len(p.parts) == 1 && p.trailing:
		if p.parts[0] != "global" {
			return mxerr.InvalidParam("Unknown push rule scope; only 'global' exists")
		}
		return httpx.WriteJSON(w, 200, rs)
	case len(p.parts) == 2 && p.trailing:
		kind, _, _, err := p.target(2)
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, *rs.List(kind))
	}
	kind, ruleID, attr, err := p.target(3)
	if err != nil {
		return err
	}
	rule, ok := rs.Find(kind, ruleID)
	if !ok {
		return mxerr.NotFound("Push rule not found")
	}
	switch attr {
	case "enabled":
		return httpx.WriteJSON(w, 200, map[string]bool{"enabled": rule.Enabled})
	case "actions":
		return httpx.WriteJSON(w, 200, map[string]any{"actions": rule.Actions})
	}
	return httpx.WriteJSON(w, 200, rule)
}

// putPushRule serves PUT /pushrules/global/{kind}/{ruleId} and …/enabled|actions.
func (a *API) putPushRule(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	p := parsePushRulePath(r.PathValue("path"))
	kind, ruleID, attr, err := p.target(3)
	if err != nil {
		return err
	}
	raw, err := a.rawObject(r)
	if err != nil {
		return err
	}
	var change func(rs *push.Ruleset) error
	switch attr {
	case "":
		var body push.NewRule
		if err := httpx.DecodeObject(raw, &body); err != nil {
			return err
		}
		before, _ := query(r, "before")
		after, _ := query(r, "after")
		change = func(rs *push.Ruleset) error { return push.Put(rs, kind, ruleID, body, before, after) }
	case "enabled":
		var body struct {
			Enabled *bool `json:"enabled"`
		}
		if err := httpx.DecodeObject(raw, &body); err != nil {
			return err
		}
		if body.Enabled == nil {
			return mxerr.MissingParam("Missing 'enabled'")
		}
		change = func(rs *push.Ruleset) error {
			rule, ok := rs.Find(kind, ruleID)
			if !ok {
				return mxerr.NotFound("Push rule not found")
			}
			rule.Enabled = *body.Enabled
			return nil
		}
	case "actions":
		var body struct {
			Actions []jsontext.Value `json:"actions"`
		}
		if err := httpx.DecodeObject(raw, &body); err != nil {
			return err
		}
		if body.Actions == nil {
			return mxerr.MissingParam("Missing 'actions'")
		}
		if err := push.ValidateActions(body.Actions); err != nil {
			return err
		}
		change = func(rs *push.Ruleset) error {
			rule, ok := rs.Find(kind, ruleID)
			if !ok {
				return mxerr.NotFound("Push rule not found")
			}
			rule.Actions = body.Actions
			return nil
		}
	}
	if err := a.changePushRules(r, s, change); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

// deletePushRule serves DELETE /pushrules/global/{kind}/{ruleId}.
func (a *API) deletePushRule(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	p := parsePushRulePath(r.PathValue("path"))
	kind, ruleID, attr, err := p.target(3)
	if err != nil {
		return err
	}
	if attr != "" {
		return mxerr.InvalidParam("Push rule attributes cannot be deleted")
	}
	if err := a.changePushRules(r, s, func(rs *push.Ruleset) error { return push.Delete(rs, kind, ruleID) }); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

// changePushRules applies change to the user's rules and stores the result as their
// m.push_rules account data, which /sync then delivers to every device.
func (a *API) changePushRules(r *http.Request, s *auth.Session, change func(rs *push.Ruleset) error) error {
	return a.eph.UpdateAccountData(r.Context(), s.UserID, "", push.AccountDataType, func(old []byte) ([]byte, error) {
		rs := push.Load(old, s.UserID)
		if err := change(&rs); err != nil {
			return nil, err
		}
		raw, err := push.Encode(rs)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		return raw, nil
	})
}
