// Package push holds a user's push rules: the spec's server-default rules, the rules the
// user added, and the changes the push-rules API makes to them. A user's rules live in
// their global account data as m.push_rules (the spec's own event for them), so /sync
// delivers every change like any other account data; this package only builds and edits
// that document.
package push

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"slices"
	"strings"

	"porthole/internal/mxerr"
)

// AccountDataType is the account-data event that carries a user's push rules.
const AccountDataType = "m.push_rules"

// Kinds, from most to least important.
const (
	Override  = "override"
	Content   = "content"
	Room      = "room"
	Sender    = "sender"
	Underride = "underride"
)

// Kinds lists the rule kinds in priority order.
var Kinds = []string{Override, Content, Room, Sender, Underride}

// Rule is one push rule as clients see it. Conditions appear on override and underride
// rules, Pattern on content rules; room and sender rules carry neither.
type Rule struct {
	RuleID     string           `json:"rule_id"`
	Default    bool             `json:"default"`
	Enabled    bool             `json:"enabled"`
	Conditions []jsontext.Value `json:"conditions,omitzero"`
	Pattern    *string          `json:"pattern,omitempty"`
	Actions    []jsontext.Value `json:"actions"`
}

// Ruleset is the rules of one scope ("global"), per kind in priority order.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// Document is the content of the m.push_rules account data.
type Document struct {
	Global Ruleset `json:"global"`
}

// List returns the rules of a kind (nil for an unknown kind).
func (rs *Ruleset) List(kind string) *[]Rule {
	switch kind {
	case Override:
		return &rs.Override
	case Content:
		return &rs.Content
	case Room:
		return &rs.Room
	case Sender:
		return &rs.Sender
	case Underride:
		return &rs.Underride
	}
	return nil
}

// Find returns the rule of a kind with the given ID.
func (rs *Ruleset) Find(kind, ruleID string) (*Rule, bool) {
	list := rs.List(kind)
	if list == nil {
		return nil, false
	}
	i := slices.IndexFunc(*list, func(r Rule) bool { return r.RuleID == ruleID })
	if i < 0 {
		return nil, false
	}
	return &(*list)[i], true
}

// raw is a JSON literal; the default rules are written in the spec's own notation.
func raw(s string) jsontext.Value { return jsontext.Value(s) }

func cond(kind, key, pattern string) jsontext.Value {
	b, _ := json.Marshal(map[string]string{"kind": kind, "key": key, "pattern": pattern}, json.Deterministic(true))
	return b
}

func eventMatch(key, pattern string) jsontext.Value { return cond("event_match", key, pattern) }

var (
	notify         = raw(`"notify"`)
	soundDefault   = raw(`{"set_tweak":"sound","value":"default"}`)
	soundRing      = raw(`{"set_tweak":"sound","value":"ring"}`)
	highlight      = raw(`{"set_tweak":"highlight"}`)
	memberCountTwo = raw(`{"kind":"room_member_count","is":"2"}`)
)

func defaultRule(id string, conditions []jsontext.Value, actions ...jsontext.Value) Rule {
	if conditions == nil {
		conditions = []jsontext.Value{}
	}
	if actions == nil {
		actions = []jsontext.Value{}
	}
	return Rule{RuleID: id, Default: true, Enabled: true, Conditions: conditions, Actions: actions}
}

// Defaults returns the server-default rules for userID, as the push module of the spec
// defines them. The legacy rules that match names in the message body (deprecated in
// v1.7, removed in v1.17) are kept, as Synapse keeps them: Porthole advertises spec
// versions up to v1.12, and messages from clients without m.mentions need them.
func Defaults(userID string) Ruleset {
	uid, _ := json.Marshal(userID)
	localpart := strings.TrimPrefix(userID, "@")
	if i := strings.IndexByte(localpart, ':'); i >= 0 {
		localpart = localpart[:i]
	}
	containsUserName := defaultRule(".m.rule.contains_user_name", nil, notify, soundDefault, highlight)
	containsUserName.Conditions = nil
	containsUserName.Pattern = &localpart
	master := defaultRule(".m.rule.master", nil)
	master.Enabled = false
	return Ruleset{
		Override: []Rule{
			master,
			defaultRule(".m.rule.suppress_notices", []jsontext.Value{eventMatch("content.msgtype", "m.notice")}),
			defaultRule(".m.rule.invite_for_me", []jsontext.Value{
				eventMatch("type", "m.room.member"),
				eventMatch("content.membership", "invite"),
				eventMatch("state_key", userID),
			}, notify, soundDefault),
			defaultRule(".m.rule.member_event", []jsontext.Value{eventMatch("type", "m.room.member")}),
			defaultRule(".m.rule.is_user_mention", []jsontext.Value{
				raw(`{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":` + string(uid) + `}`),
			}, notify, soundDefault, highlight),
			defaultRule(".m.rule.contains_display_name", []jsontext.Value{raw(`{"kind":"contains_display_name"}`)},
				notify, soundDefault, highlight),
			defaultRule(".m.rule.is_room_mention", []jsontext.Value{
				raw(`{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true}`),
				raw(`{"kind":"sender_notification_permission","key":"room"}`),
			}, notify, highlight),
			defaultRule(".m.rule.roomnotif", []jsontext.Value{
				eventMatch("content.body", "@room"),
				raw(`{"kind":"sender_notification_permission","key":"room"}`),
			}, notify, highlight),
			defaultRule(".m.rule.tombstone", []jsontext.Value{
				eventMatch("type", "m.room.tombstone"), eventMatch("state_key", ""),
			}, notify, highlight),
			defaultRule(".m.rule.reaction", []jsontext.Value{eventMatch("type", "m.reaction")}),
			defaultRule(".m.rule.room.server_acl", []jsontext.Value{
				eventMatch("type", "m.room.server_acl"), eventMatch("state_key", ""),
			}),
			defaultRule(".m.rule.suppress_edits", []jsontext.Value{
				raw(`{"kind":"event_property_is","key":"content.m\\.relates_to.rel_type","value":"m.replace"}`),
			}),
		},
		Content: []Rule{containsUserName},
		Room:    []Rule{},
		Sender:  []Rule{},
		Underride: []Rule{
			defaultRule(".m.rule.call", []jsontext.Value{eventMatch("type", "m.call.invite")}, notify, soundRing),
			defaultRule(".m.rule.encrypted_room_one_to_one", []jsontext.Value{
				memberCountTwo, eventMatch("type", "m.room.encrypted"),
			}, notify, soundDefault),
			defaultRule(".m.rule.room_one_to_one", []jsontext.Value{
				memberCountTwo, eventMatch("type", "m.room.message"),
			}, notify, soundDefault),
			defaultRule(".m.rule.message", []jsontext.Value{eventMatch("type", "m.room.message")}, notify),
			defaultRule(".m.rule.encrypted", []jsontext.Value{eventMatch("type", "m.room.encrypted")}, notify),
		},
	}
}

// IsDefault reports whether a rule ID is reserved for server-default rules.
func IsDefault(ruleID string) bool { return strings.HasPrefix(ruleID, ".") }

// Load returns the user's effective rules from their stored m.push_rules content (nil when
// they never changed any). The server defaults always come from the current definitions,
// keeping only the user's enabled flag and actions for them, so a default rule added or
// changed in a later release reaches every user; the user's own rules keep their order.
func Load(stored []byte, userID string) Ruleset {
	rs := Defaults(userID)
	if len(stored) == 0 {
		return rs
	}
	var doc Document
	if err := json.Unmarshal(stored, &doc); err != nil {
		// Only this package writes the document; an unreadable one falls back to defaults
		// rather than locking the user out of their settings.
		return rs
	}
	for _, kind := range Kinds {
		var own []Rule
		for _, r := range *doc.Global.List(kind) {
			if IsDefault(r.RuleID) {
				if d, ok := rs.Find(kind, r.RuleID); ok {
					d.Enabled = r.Enabled
					if r.Actions != nil {
						d.Actions = r.Actions
					}
				}
				continue
			}
			r.Default = false
			own = append(own, r)
		}
		list := rs.List(kind)
		// The master rule stays above every user rule; other defaults come after them.
		at := 0
		if kind == Override && len(*list) > 0 {
			at = 1
		}
		*list = slices.Insert(*list, at, own...)
	}
	return rs
}

// Encode returns the m.push_rules content for rs.
func Encode(rs Ruleset) ([]byte, error) {
	return json.Marshal(Document{Global: rs}, json.Deterministic(true))
}

// ValidateRuleID checks a rule ID from a request path for creating or changing a rule.
func ValidateRuleID(ruleID string) error {
	switch {
	case ruleID == "":
		return mxerr.InvalidParam("Missing rule ID")
	case IsDefault(ruleID):
		return mxerr.InvalidParam("Rule IDs starting with '.' are reserved for server-default rules")
	case strings.ContainsAny(ruleID, `/\`):
		return mxerr.InvalidParam("Rule IDs may not contain slashes or backslashes")
	case len(ruleID) > 255:
		return mxerr.InvalidParam("Rule ID too long")
	}
	return nil
}

// NewRule is the body of PUT /pushrules/global/{kind}/{ruleId}.
type NewRule struct {
	Actions    []jsontext.Value `json:"actions"`
	Conditions []jsontext.Value `json:"conditions"`
	Pattern    *string          `json:"pattern"`
}

// Put adds or replaces the user rule ruleID of kind. A new rule goes before the rule named
// by before, or after the one named by after, or else first among the user's rules of
// that kind; a replaced rule keeps its place unless before or after is given.
func Put(rs *Ruleset, kind, ruleID string, body NewRule, before, after string) error {
	list := rs.List(kind)
	if list == nil {
		return mxerr.InvalidParam("Unknown push rule kind " + kind)
	}
	if err := ValidateRuleID(ruleID); err != nil {
		return err
	}
	if body.Actions == nil {
		return mxerr.BadJSON("Missing 'actions'")
	}
	if err := ValidateActions(body.Actions); err != nil {
		return err
	}
	rule := Rule{RuleID: ruleID, Enabled: true, Actions: body.Actions}
	switch kind {
	case Override, Underride:
		if err := validateConditions(body.Conditions); err != nil {
			return err
		}
		rule.Conditions = body.Conditions
		if rule.Conditions == nil {
			rule.Conditions = []jsontext.Value{}
		}
	case Content:
		if body.Pattern == nil {
			return mxerr.BadJSON("Content rules need a 'pattern'")
		}
		rule.Pattern = body.Pattern
	}
	for _, ref := range []string{before, after} {
		if ref == "" {
			continue
		}
		if IsDefault(ref) {
			return mxerr.Unknown("Cannot place a rule relative to a server-default rule: " + ref)
		}
		if ref == ruleID {
			return mxerr.Unknown("A rule cannot be placed relative to itself: " + ref)
		}
		if _, ok := rs.Find(kind, ref); !ok {
			return mxerr.Unknown("before/after rule not found: " + ref)
		}
	}
	if old, ok := rs.Find(kind, ruleID); ok {
		if before == "" && after == "" {
			rule.Enabled = old.Enabled
			*old = rule
			return nil
		}
		*list = slices.DeleteFunc(*list, func(r Rule) bool { return r.RuleID == ruleID })
	}
	var at int
	switch {
	case before != "":
		at = slices.IndexFunc(*list, func(r Rule) bool { return r.RuleID == before })
	case after != "":
		at = slices.IndexFunc(*list, func(r Rule) bool { return r.RuleID == after }) + 1
	default:
		at = slices.IndexFunc(*list, func(r Rule) bool { return !IsDefault(r.RuleID) })
		if at < 0 {
			// No user rules yet: after the master rule, before the other defaults.
			at = 0
			if kind == Override && len(*list) > 0 && (*list)[0].RuleID == ".m.rule.master" {
				at = 1
			}
		}
	}
	*list = slices.Insert(*list, at, rule)
	return nil
}

// Delete removes a user rule; server-default rules cannot be deleted.
func Delete(rs *Ruleset, kind, ruleID string) error {
	list := rs.List(kind)
	if list == nil {
		return mxerr.InvalidParam("Unknown push rule kind " + kind)
	}
	if _, ok := rs.Find(kind, ruleID); !ok || IsDefault(ruleID) {
		return mxerr.NotFound("Push rule not found")
	}
	*list = slices.DeleteFunc(*list, func(r Rule) bool { return r.RuleID == ruleID })
	return nil
}

// ValidateActions checks a list of actions: "notify" (and the legacy "dont_notify" and
// "coalesce", which clients still send), or a {"set_tweak": …} object.
func ValidateActions(actions []jsontext.Value) error {
	for _, a := range actions {
		switch a.Kind() {
		case '"':
			var s string
			if err := json.Unmarshal(a, &s); err != nil || !slices.Contains([]string{"notify", "dont_notify", "coalesce"}, s) {
				return mxerr.InvalidParam("Unrecognised action " + string(a))
			}
		case '{':
			var t struct {
				SetTweak *string `json:"set_tweak"`
			}
			if err := json.Unmarshal(a, &t); err != nil || t.SetTweak == nil || *t.SetTweak == "" {
				return mxerr.InvalidParam("Unrecognised action " + string(a))
			}
		default:
			return mxerr.InvalidParam("Unrecognised action " + string(a))
		}
	}
	return nil
}

// validateConditions checks that each condition is an object with a kind, and that the
// kinds the spec defines have their parameters. Unknown kinds are allowed (they never
// match, as the spec says).
func validateConditions(conds []jsontext.Value) error {
	for _, c := range conds {
		var cd struct {
			Kind    *string        `json:"kind"`
			Key     *string        `json:"key"`
			Pattern *string        `json:"pattern"`
			Is      *string        `json:"is"`
			Value   jsontext.Value `json:"value"`
		}
		if c.Kind() != '{' || json.Unmarshal(c, &cd) != nil || cd.Kind == nil || *cd.Kind == "" {
			return mxerr.BadJSON("Each condition must be an object with a 'kind'")
		}
		missing := ""
		switch *cd.Kind {
		case "event_match":
			if cd.Key == nil {
				missing = "key"
			} else if cd.Pattern == nil {
				missing = "pattern"
			}
		case "event_property_is", "event_property_contains":
			if cd.Key == nil {
				missing = "key"
			} else if len(cd.Value) == 0 {
				missing = "value"
			}
		case "room_member_count":
			if cd.Is == nil {
				missing = "is"
			}
		case "sender_notification_permission":
			if cd.Key == nil {
				missing = "key"
			}
		}
		if missing != "" {
			return mxerr.BadJSON("Condition " + *cd.Kind + " needs '" + missing + "'")
		}
	}
	return nil
}

// CopyRoomRules gives newRoom a copy of each enabled rule of the user's that is about
// oldRoom, for a room upgrade (as Synapse copies them): room rules named after oldRoom,
// and override and underride rules with an event_match on room_id for it, whose copies
// match newRoom instead. A copy is named after newRoom and goes first among the user's
// rules of its kind. It reports whether anything was copied.
func CopyRoomRules(rs *Ruleset, oldRoom, newRoom string) bool {
	copied := false
	for _, kind := range Kinds {
		for _, r := range slices.Clone(*rs.List(kind)) {
			if !r.Enabled || IsDefault(r.RuleID) {
				continue
			}
			var conds []jsontext.Value
			about := kind == Room && r.RuleID == oldRoom
			for _, c := range r.Conditions {
				var cd map[string]jsontext.Value
				if json.Unmarshal(c, &cd) == nil && string(cd["key"]) == `"room_id"` && string(cd["pattern"]) == string(mustQuote(oldRoom)) {
					about = true
					cd["pattern"] = mustQuote(newRoom)
					c, _ = json.Marshal(cd, json.Deterministic(true))
				}
				conds = append(conds, c)
			}
			if !about {
				continue
			}
			body := NewRule{Actions: r.Actions, Conditions: conds, Pattern: r.Pattern}
			if Put(rs, kind, newRoom, body, "", "") == nil {
				copied = true
			}
		}
	}
	return copied
}

func mustQuote(s string) jsontext.Value {
	b, _ := jsontext.AppendQuote(nil, s)
	return b
}
