package push

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.mau.fi/util/glob"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"
)

// Evaluation of push rules: the spec's conditions over an event flattened once, read by
// every member's compiled rules.
//
// mautrix's pushrules package was checked against the spec and Synapse and is used where it
// agrees: its room_member_count grammar (pushrules.MemberCountFilterRegex), its power-level
// model (event.PowerLevelsEventContent, which knows room v12's creators) and its glob
// compiler (go.mau.fi/util/glob). Its evaluator itself is not used, because it differs from
// the spec in ways clients would notice:
//   - event_match without wildcards matches any substring ("m.notice" would match
//     "xm.noticex"); the spec asks for the whole value, and for content.body for a substring
//     bounded by word boundaries;
//   - event_match matches numbers and booleans stringified (the spec: only strings);
//   - contains_display_name is case-sensitive;
//   - event_property_is/contains compare with ==, which panics on objects and arrays, and a
//     "sound" tweak that is not a string panics in PushActionArray.Should;
//   - sender_notification_permission knows only the "room" key;
//   - content rules compile a regular expression on every evaluation.

// Matched is the outcome of one member's rules for an event: the first matching rule's
// actions (without the historical dont_notify and coalesce).
type Matched struct {
	RuleID    string
	Notify    bool
	Highlight bool
	// Actions is the canonical JSON array of the actions.
	Actions string
}

// Member is the member an event is evaluated for.
type Member struct {
	UserID string
	// DisplayName is the member's display name in the room ("" for none).
	DisplayName string
	// LowerDisplayName, when set, is strings.ToLower(DisplayName), computed once by a caller
	// that evaluates many events for the member.
	LowerDisplayName string
}

// Event is an event prepared for evaluation.
type Event struct {
	flat        map[string]value
	lowerBody   string
	hasBody     bool
	hasMentions bool
	roomID      string
	sender      string
	// MemberCount is the number of joined members (room_member_count).
	MemberCount int
	// PowerLevels returns the sender's power level and the room's notifications levels;
	// it is called at most once, when a sender_notification_permission condition is met.
	PowerLevels func() (senderLevel int, notifications map[string]int)
	plDone      bool
	senderLevel int
	notifLevels map[string]int
	// defaultCands lists, once defaultDone, the rules of DefaultRules whose
	// member-independent conditions hold for this event, up to the first that has no
	// member conditions (which matches everyone): most members share the default rules, so
	// a member's evaluation is only the member conditions of these few rules.
	defaultCands []int
	defaultDone  bool
}

// value is a flattened event property: a string, number, boolean, null or a list of them.
type value struct {
	kind byte // 's' string, 'n' number, 'b' bool, 'z' null, 'a' array
	s    string
	n    float64
	b    bool
	arr  []value
}

func (v value) equal(w value) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case 's':
		return v.s == w.s
	case 'n':
		return v.n == w.n
	case 'b':
		return v.b == w.b
	case 'z':
		return true
	}
	return false
}

func simpleValue(x any) (value, bool) {
	switch t := x.(type) {
	case string:
		return value{kind: 's', s: t}, true
	case float64:
		return value{kind: 'n', n: t}, true
	case bool:
		return value{kind: 'b', b: t}, true
	case nil:
		return value{kind: 'z'}, true
	}
	return value{}, false
}

// NewEvent flattens an event (its PDU or client JSON) for evaluation. Keys are the spec's
// dot-separated paths with dots and backslashes in names escaped; as in Synapse, values
// that are objects are descended into, lists keep their simple members.
func NewEvent(raw []byte, memberCount int) (*Event, error) {
	var top map[string]any
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	ev := &Event{flat: make(map[string]value, 16), MemberCount: memberCount}
	flatten(ev.flat, "", top)
	if content, ok := top["content"].(map[string]any); ok {
		_, ev.hasMentions = content["m.mentions"]
		if body, ok := content["body"].(string); ok {
			ev.hasBody = true
			ev.lowerBody = strings.ToLower(body)
		}
	}
	ev.roomID, _ = top["room_id"].(string)
	ev.sender, _ = top["sender"].(string)
	return ev, nil
}

// SetRoomID sets the room ID for events whose JSON has none (room v12 create events).
func (ev *Event) SetRoomID(roomID string) {
	ev.roomID = roomID
	ev.flat["room_id"] = value{kind: 's', s: roomID}
}

func escapeKey(k string) string {
	if !strings.ContainsAny(k, `.\`) {
		return k
	}
	return strings.NewReplacer(`\`, `\\`, `.`, `\.`).Replace(k)
}

func flatten(out map[string]value, prefix string, obj map[string]any) {
	for k, v := range obj {
		key := escapeKey(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if sv, ok := simpleValue(v); ok {
			out[key] = sv
			continue
		}
		switch t := v.(type) {
		case []any:
			arr := make([]value, 0, len(t))
			for _, item := range t {
				if sv, ok := simpleValue(item); ok {
					arr = append(arr, sv)
				}
			}
			out[key] = value{kind: 'a', arr: arr}
		case map[string]any:
			if prefix == "" && (k == "signatures" || k == "hashes" || k == "unsigned") {
				continue // never part of what rules look at
			}
			flatten(out, key, t)
		}
	}
}

// NormalizeKey rewrites a rule's dot-separated path in the canonical escaping flatten uses:
// "\." and "\\" are escapes; any other backslash is a literal backslash (the spec).
func NormalizeKey(key string) string {
	if !strings.Contains(key, `\`) {
		return key
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			cur.WriteByte(key[i+1])
			i++
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	for i := range parts {
		parts[i] = escapeKey(parts[i])
	}
	return strings.Join(parts, ".")
}

func (ev *Event) powerLevels() (int, map[string]int) {
	if !ev.plDone {
		ev.plDone = true
		if ev.PowerLevels != nil {
			ev.senderLevel, ev.notifLevels = ev.PowerLevels()
		}
	}
	return ev.senderLevel, ev.notifLevels
}

// SenderLevels reads the sender's power level and the notifications levels from an
// m.room.power_levels content (nil when the room has none) with mautrix's model; create is
// the room's m.room.create content and creator its sender, for room v12's creators.
func SenderLevels(powerLevels []byte, create []byte, creator, sender string) (int, map[string]int) {
	pl := &event.PowerLevelsEventContent{}
	notif := map[string]int{}
	if len(powerLevels) > 0 {
		if json.Unmarshal(powerLevels, pl) != nil {
			pl = &event.PowerLevelsEventContent{}
		}
		var raw struct {
			Notifications map[string]jsontext.Value `json:"notifications"`
		}
		if json.Unmarshal(powerLevels, &raw) == nil {
			for k, v := range raw.Notifications {
				if n, err := strconv.Atoi(strings.Trim(string(v), `"`)); err == nil {
					notif[k] = n
				}
			}
		}
	} else {
		// No power levels event: the creator has 100, everyone else 0 (auth rules).
		pl.Users = map[id.UserID]int{id.UserID(creator): 100}
	}
	if len(create) > 0 {
		var cc event.CreateEventContent
		if json.Unmarshal(create, &cc) == nil {
			pl.CreateEvent = &event.Event{Sender: id.UserID(creator), Type: event.StateCreate,
				Content: event.Content{Parsed: &cc}}
		}
	}
	return pl.GetUserLevel(id.UserID(sender)), notif
}

// condition is one compiled push condition.
type condition interface {
	match(ev *Event, m *Member) bool
}

type never struct{}

func (never) match(*Event, *Member) bool { return false }

// wholeMatch is event_match on any key but content.body: a case-insensitive glob over the
// whole string value.
type wholeMatch struct {
	key string
	g   glob.Glob
}

func (c wholeMatch) match(ev *Event, _ *Member) bool {
	v, ok := ev.flat[c.key]
	return ok && v.kind == 's' && c.g.Match(v.s)
}

// wordMatcher matches a glob against a lower-cased text at word boundaries, as Synapse
// does: the match may start at the start of the text, at a word boundary or after a
// non-word character, and end likewise. Words are [A-Za-z0-9_] (the spec).
type wordMatcher struct {
	literal string // lower-cased pattern without wildcards, or ""
	re      *regexp.Regexp
}

func newWordMatcher(pattern string) wordMatcher {
	var b strings.Builder
	b.WriteString(`(?i)(?:^|\b|\W)`)
	glob.ToRegexPattern(glob.Simplify(pattern), &b)
	b.WriteString(`(?:\b|\W|$)`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return wordMatcher{}
	}
	wm := wordMatcher{re: re}
	if !strings.ContainsAny(pattern, "*?") {
		wm.literal = strings.ToLower(pattern)
	}
	return wm
}

func (w wordMatcher) match(lower string) bool {
	if w.re == nil {
		return false
	}
	// Most texts do not contain the word at all: a substring search answers those.
	if w.literal != "" && !strings.Contains(lower, w.literal) {
		return false
	}
	return w.re.MatchString(lower)
}

// bodyMatch is event_match on content.body, and content rules.
type bodyMatch struct{ w wordMatcher }

func (c bodyMatch) match(ev *Event, _ *Member) bool { return ev.hasBody && c.w.match(ev.lowerBody) }

// userIDMatch is the default rules' "[the user's Matrix ID]" event_match.
type userIDMatch struct{ key string }

func (c userIDMatch) match(ev *Event, m *Member) bool {
	v, ok := ev.flat[c.key]
	return ok && v.kind == 's' && strings.EqualFold(v.s, m.UserID)
}

// localpartMatch is .m.rule.contains_user_name: the member's localpart as a word of the body.
type localpartMatch struct{}

var localpartMatchers sync.Map // localpart → wordMatcher

func cachedWordMatcher(cache *sync.Map, s string) wordMatcher {
	if w, ok := cache.Load(s); ok {
		return w.(wordMatcher)
	}
	w := newWordMatcher(s)
	cache.Store(s, w)
	return w
}

func localpart(userID string) string {
	lp := strings.TrimPrefix(userID, "@")
	if i := strings.IndexByte(lp, ':'); i >= 0 {
		lp = lp[:i]
	}
	return lp
}

func (localpartMatch) match(ev *Event, m *Member) bool {
	if !ev.hasBody {
		return false
	}
	lp := strings.ToLower(localpart(m.UserID))
	if lp == "" || !strings.Contains(ev.lowerBody, lp) {
		return false
	}
	return cachedWordMatcher(&localpartMatchers, lp).match(ev.lowerBody)
}

// displayNameMatch is contains_display_name: the member's room display name as a word of
// the body, case-insensitively (an empty name never matches).
type displayNameMatch struct{}

var displayNameMatchers sync.Map

func (displayNameMatch) match(ev *Event, m *Member) bool {
	if !ev.hasBody || m.DisplayName == "" {
		return false
	}
	lower := m.LowerDisplayName
	if lower == "" {
		lower = strings.ToLower(m.DisplayName)
	}
	if !strings.Contains(ev.lowerBody, lower) {
		return false
	}
	// Display names are chosen by users, so only literal matching: quote glob characters.
	return cachedWordMatcher(&displayNameMatchers, quoteGlob(lower)).match(ev.lowerBody)
}

// quoteGlob turns a literal into a pattern without wildcards ("*" and "?" cannot be
// escaped in Matrix globs, so they become single-character wildcards that match themselves).
func quoteGlob(s string) string {
	if !strings.ContainsAny(s, "*?") {
		return s
	}
	return strings.NewReplacer("*", "?", "?", "?").Replace(s)
}

type propertyIs struct {
	key string
	v   value
}

func (c propertyIs) match(ev *Event, _ *Member) bool {
	v, ok := ev.flat[c.key]
	return ok && v.kind != 'a' && v.equal(c.v)
}

type propertyContains struct {
	key string
	v   value
}

func (c propertyContains) match(ev *Event, _ *Member) bool {
	v, ok := ev.flat[c.key]
	if !ok || v.kind != 'a' {
		return false
	}
	for _, item := range v.arr {
		if item.equal(c.v) {
			return true
		}
	}
	return false
}

// userIDContains is .m.rule.is_user_mention: the member's ID in a list.
type userIDContains struct{ key string }

func (c userIDContains) match(ev *Event, m *Member) bool {
	v, ok := ev.flat[c.key]
	if !ok || v.kind != 'a' {
		return false
	}
	for _, item := range v.arr {
		if item.kind == 's' && item.s == m.UserID {
			return true
		}
	}
	return false
}

type memberCount struct {
	op string
	n  int
}

func (c memberCount) match(ev *Event, _ *Member) bool {
	switch c.op {
	case "", "==":
		return ev.MemberCount == c.n
	case "<":
		return ev.MemberCount < c.n
	case ">":
		return ev.MemberCount > c.n
	case "<=":
		return ev.MemberCount <= c.n
	case ">=":
		return ev.MemberCount >= c.n
	}
	return false
}

type senderPermission struct{ key string }

func (c senderPermission) match(ev *Event, _ *Member) bool {
	level, notif := ev.powerLevels()
	need, ok := notif[c.key]
	if !ok {
		need = 50
	}
	return level >= need
}

type roomIs struct{ roomID string }

func (c roomIs) match(ev *Event, _ *Member) bool { return ev.roomID == c.roomID }

type senderIs struct{ userID string }

func (c senderIs) match(ev *Event, _ *Member) bool { return ev.sender == c.userID }

// compileCondition turns one stored condition into a matcher; unknown or malformed ones
// never match (the spec).
func compileCondition(raw jsontext.Value) condition {
	var c struct {
		Kind    string         `json:"kind"`
		Key     *string        `json:"key"`
		Pattern *string        `json:"pattern"`
		Is      *string        `json:"is"`
		Value   jsontext.Value `json:"value"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return never{}
	}
	switch c.Kind {
	case "event_match":
		if c.Key == nil || c.Pattern == nil {
			return never{}
		}
		key := NormalizeKey(*c.Key)
		if key == "content.body" {
			return bodyMatch{newWordMatcher(*c.Pattern)}
		}
		g := glob.Compile(*c.Pattern)
		if g == nil {
			return never{}
		}
		return wholeMatch{key: key, g: g}
	case "event_property_is", "event_property_contains":
		if c.Key == nil || len(c.Value) == 0 {
			return never{}
		}
		var x any
		if json.Unmarshal(c.Value, &x) != nil {
			return never{}
		}
		v, ok := simpleValue(x)
		if !ok {
			return never{} // only non-compound values are supported (the spec)
		}
		if c.Kind == "event_property_is" {
			return propertyIs{key: NormalizeKey(*c.Key), v: v}
		}
		return propertyContains{key: NormalizeKey(*c.Key), v: v}
	case "contains_display_name":
		return displayNameMatch{}
	case "room_member_count":
		if c.Is == nil {
			return never{}
		}
		m := pushrules.MemberCountFilterRegex.FindStringSubmatch(*c.Is)
		if len(m) != 3 {
			return never{}
		}
		n, err := strconv.Atoi(m[2])
		if err != nil {
			return never{}
		}
		return memberCount{op: m[1], n: n}
	case "sender_notification_permission":
		if c.Key == nil {
			return never{}
		}
		return senderPermission{key: *c.Key}
	}
	return never{}
}

// ParseActions reads a rule's actions: whether they notify and highlight (a highlight
// tweak without a value is true; with a value, its truth), and their canonical JSON
// without the historical dont_notify and coalesce, which the spec says to ignore.
func ParseActions(actions []jsontext.Value) (notify, highlight bool, canonical string) {
	kept := make([]jsontext.Value, 0, len(actions))
	for _, a := range actions {
		switch a.Kind() {
		case '"':
			var s string
			json.Unmarshal(a, &s)
			if s == "dont_notify" || s == "coalesce" {
				continue
			}
			if s == "notify" {
				notify = true
			}
		case '{':
			var t struct {
				SetTweak string          `json:"set_tweak"`
				Value    *jsontext.Value `json:"value"`
			}
			if json.Unmarshal(a, &t) == nil && t.SetTweak == "highlight" {
				highlight = t.Value == nil || truthy(*t.Value)
			}
		}
		c := a.Clone()
		if c.Canonicalize() != nil {
			continue
		}
		kept = append(kept, c)
	}
	b, _ := json.Marshal(kept)
	return notify, highlight, string(b)
}

// truthy is how Synapse reads a highlight tweak's value: false, null, 0 and "" are false.
func truthy(v jsontext.Value) bool {
	switch string(v) {
	case "false", "null", "0", `""`:
		return false
	}
	return true
}

type compiledRule struct {
	id     string
	legacy bool // a body-mention rule, skipped when the event has m.mentions
	// indep are the conditions that read only the event (the same for every member), dep
	// those that read the member too.
	indep, dep []condition
	matched    *Matched
}

// keyPresent holds when the event has the property (of the kind) a member condition reads.
type keyPresent struct {
	key  string
	kind byte
}

func (c keyPresent) match(ev *Event, _ *Member) bool {
	v, ok := ev.flat[c.key]
	return ok && v.kind == c.kind
}

type hasBody struct{}

func (hasBody) match(ev *Event, _ *Member) bool { return ev.hasBody }

// precondition is the member-independent part of a member condition.
func precondition(c condition) condition {
	switch c := c.(type) {
	case userIDMatch:
		return keyPresent{key: c.key, kind: 's'}
	case userIDContains:
		return keyPresent{key: c.key, kind: 'a'}
	case localpartMatch, displayNameMatch:
		return hasBody{}
	}
	return nil
}

// memberDependent reports whether a condition reads the member.
func memberDependent(c condition) bool {
	switch c.(type) {
	case userIDMatch, userIDContains, localpartMatch, displayNameMatch:
		return true
	}
	return false
}

// Compiled is a member's rules ready to evaluate, in priority order.
type Compiled struct {
	rules []compiledRule
}

// legacyMention lists the default rules that look for mentions in the body; an event with
// m.mentions is judged by the intentional-mention rules instead (spec v1.7, as Synapse).
var legacyMention = map[string]bool{
	".m.rule.contains_display_name": true,
	".m.rule.contains_user_name":    true,
	".m.rule.roomnotif":             true,
}

// placeholderUser stands for the member in the shared compiled default rules.
const placeholderUser = "@\x00:\x00"

var (
	defaultsOnce sync.Once
	// defaultConds holds the default rules' conditions with the member's ID templated.
	defaultConds map[string][]condition
	defaultSet   *Compiled
)

func initDefaults() {
	defaultConds = map[string][]condition{}
	rs := Defaults(placeholderUser)
	for _, kind := range Kinds {
		for _, r := range *rs.List(kind) {
			defaultConds[kind+"/"+r.RuleID] = compileRuleConds(kind, r, true)
		}
	}
	defaultSet = compile(rs)
}

// compileRuleConds compiles a rule's conditions by kind; templated replaces the
// placeholder user in default rules with per-member matchers.
func compileRuleConds(kind string, r Rule, templated bool) []condition {
	switch kind {
	case Override, Underride:
		conds := make([]condition, 0, len(r.Conditions))
		for _, raw := range r.Conditions {
			if templated {
				var c struct {
					Kind    string `json:"kind"`
					Key     string `json:"key"`
					Pattern string `json:"pattern"`
				}
				var v struct {
					Value string `json:"value"`
				}
				json.Unmarshal(raw, &c)
				json.Unmarshal(raw, &v)
				if c.Kind == "event_match" && c.Pattern == placeholderUser {
					conds = append(conds, userIDMatch{key: NormalizeKey(c.Key)})
					continue
				}
				if c.Kind == "event_property_contains" && v.Value == placeholderUser {
					conds = append(conds, userIDContains{key: NormalizeKey(c.Key)})
					continue
				}
			}
			conds = append(conds, compileCondition(raw))
		}
		return conds
	case Content:
		if r.Pattern == nil {
			return []condition{never{}}
		}
		if templated && *r.Pattern == localpart(placeholderUser) {
			return []condition{localpartMatch{}}
		}
		return []condition{bodyMatch{newWordMatcher(*r.Pattern)}}
	case Room:
		return []condition{roomIs{r.RuleID}}
	case Sender:
		return []condition{senderIs{r.RuleID}}
	}
	return []condition{never{}}
}

// matchedCache shares Matched values between compiled rule sets: most members' rules end
// in the same few outcomes.
var matchedCache sync.Map

func matchedFor(ruleID string, actions []jsontext.Value) *Matched {
	notify, highlight, canonical := ParseActions(actions)
	k := ruleID + "\x00" + canonical
	if m, ok := matchedCache.Load(k); ok {
		return m.(*Matched)
	}
	m := &Matched{RuleID: ruleID, Notify: notify, Highlight: highlight, Actions: canonical}
	if v, loaded := matchedCache.LoadOrStore(k, m); loaded {
		return v.(*Matched)
	}
	return m
}

func compile(rs Ruleset) *Compiled {
	c := &Compiled{}
	for _, kind := range Kinds {
		for _, r := range *rs.List(kind) {
			if !r.Enabled {
				continue
			}
			var conds []condition
			if IsDefault(r.RuleID) && defaultConds != nil {
				var ok bool
				if conds, ok = defaultConds[kind+"/"+r.RuleID]; !ok {
					conds = compileRuleConds(kind, r, false)
				}
			} else {
				conds = compileRuleConds(kind, r, IsDefault(r.RuleID))
			}
			cr := compiledRule{id: r.RuleID, legacy: IsDefault(r.RuleID) && legacyMention[r.RuleID], matched: matchedFor(r.RuleID, r.Actions)}
			for _, cond := range conds {
				if memberDependent(cond) {
					cr.dep = append(cr.dep, cond)
					// What the member's condition needs of the event alone is checked
					// once per event (most events lack it: no mentions list, say).
					if pre := precondition(cond); pre != nil {
						cr.indep = append(cr.indep, pre)
					}
				} else {
					cr.indep = append(cr.indep, cond)
				}
			}
			c.rules = append(c.rules, cr)
		}
	}
	return c
}

// Compile prepares a user's effective rules (Load's result) for evaluation. The default
// rules' per-user parts (the user's ID, localpart and display name) are read from the
// Member at evaluation, so every user without rules of their own shares DefaultRules.
func Compile(rs Ruleset) *Compiled {
	defaultsOnce.Do(initDefaults)
	return compile(rs)
}

// DefaultRules is the compiled server-default rules, shared by every user who never
// changed theirs.
func DefaultRules() *Compiled {
	defaultsOnce.Do(initDefaults)
	return defaultSet
}

// Evaluate returns the first of the member's rules that matches ev, or nil. The caller
// skips the event's sender (who is never notified of their own events).
func (c *Compiled) Evaluate(ev *Event, m *Member) *Matched {
	if c == defaultSet {
		if !ev.defaultDone {
			ev.defaultCands = c.candidates(ev)
			ev.defaultDone = true
		}
		for _, i := range ev.defaultCands {
			if r := &c.rules[i]; allMatch(r.dep, ev, m) {
				return r.matched
			}
		}
		return nil
	}
	for i := range c.rules {
		r := &c.rules[i]
		if r.legacy && ev.hasMentions {
			continue
		}
		if allMatch(r.indep, ev, m) && allMatch(r.dep, ev, m) {
			return r.matched
		}
	}
	return nil
}

// candidates lists the rules whose member-independent conditions hold for ev, in order,
// ending at the first without member conditions (no later rule can be reached).
func (c *Compiled) candidates(ev *Event) []int {
	var out []int
	for i := range c.rules {
		r := &c.rules[i]
		if r.legacy && ev.hasMentions {
			continue
		}
		if !allMatch(r.indep, ev, nil) {
			continue
		}
		out = append(out, i)
		if len(r.dep) == 0 {
			break
		}
	}
	return out
}

func allMatch(conds []condition, ev *Event, m *Member) bool {
	for _, c := range conds {
		if !c.match(ev, m) {
			return false
		}
	}
	return true
}
