// Package appservice is the Application Service API: registrations and their namespaces
// (pure matching, table-tested), the interest check that queues events for services in
// the events' own transactions, the pusher that delivers them from the durable outbox as
// transactions, and the calls the homeserver makes to services (user and alias queries,
// third-party lookups, ping).
package appservice

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
)

// Registration is one application service as its registration file describes it, with
// its namespaces compiled.
type Registration struct {
	// Reg is the file as mautrix reads it (the fields every bridge writes).
	Reg mas.Registration
	// File is the path it was read from (for messages).
	File string
	// ID, URL (empty: the service gets no pushes or queries), the tokens and the sender.
	ID, URL, ASToken, HSToken string
	Sender                    string // @sender_localpart:server
	// RateLimited is false when the registration exempts the service from rate limits.
	RateLimited bool
	// Ephemeral asks for typing, receipts, presence and to-device messages (MSC2409:
	// receive_ephemeral, or de.sorunome.msc2409.push_ephemeral for the unstable fields).
	Ephemeral, UnstableEphemeral bool
	Protocols                    []string

	users, aliases, rooms []Namespace
}

// Namespace is one regex of a namespace list. Regexes match from the start of the ID (as
// Python's re.match, which Synapse and the bridges' documentation assume).
type Namespace struct {
	Regex     *regexp.Regexp
	Exclusive bool
}

// first returns the first namespace matching s: as in Synapse, it alone decides whether
// the match is exclusive.
func first(list []Namespace, s string) *Namespace {
	for i := range list {
		if list[i].Regex.MatchString(s) {
			return &list[i]
		}
	}
	return nil
}

// UserInNamespace reports whether a user ID is in the service's user namespaces.
func (r *Registration) UserInNamespace(userID string) bool { return first(r.users, userID) != nil }

// InterestedInUser reports whether the service owns or watches a user: its sender, or a
// user of its namespaces.
func (r *Registration) InterestedInUser(userID string) bool {
	return userID == r.Sender || r.UserInNamespace(userID)
}

// ExclusiveUser reports whether the service claims a user for itself.
func (r *Registration) ExclusiveUser(userID string) bool {
	if userID == r.Sender {
		return true
	}
	ns := first(r.users, userID)
	return ns != nil && ns.Exclusive
}

// AliasInNamespace reports whether a room alias is in the service's alias namespaces.
func (r *Registration) AliasInNamespace(alias string) bool { return first(r.aliases, alias) != nil }

// ExclusiveAlias reports whether the service claims an alias for itself.
func (r *Registration) ExclusiveAlias(alias string) bool {
	ns := first(r.aliases, alias)
	return ns != nil && ns.Exclusive
}

// RoomInNamespace reports whether a room ID is in the service's room namespaces.
func (r *Registration) RoomInNamespace(roomID string) bool { return first(r.rooms, roomID) != nil }

// HasAliasNamespaces reports whether the service watches any aliases.
func (r *Registration) HasAliasNamespaces() bool { return len(r.aliases) > 0 }

// HasProtocol reports whether the service bridges a third-party protocol.
func (r *Registration) HasProtocol(p string) bool { return slices.Contains(r.Protocols, p) }

// Registry is the configured services.
type Registry struct {
	list    []*Registration
	byToken map[string]*Registration
	byID    map[string]*Registration
}

// NewRegistry indexes registrations (already validated, see Load).
func NewRegistry(regs ...*Registration) *Registry {
	r := &Registry{list: regs, byToken: map[string]*Registration{}, byID: map[string]*Registration{}}
	for _, reg := range regs {
		r.byToken[reg.ASToken] = reg
		r.byID[reg.ID] = reg
	}
	return r
}

// All returns every service, in configuration order.
func (r *Registry) All() []*Registration {
	if r == nil {
		return nil
	}
	return r.list
}

// ByToken returns the service whose as_token this is, or nil.
func (r *Registry) ByToken(token string) *Registration {
	if r == nil {
		return nil
	}
	return r.byToken[token]
}

// ByID returns the service with this id, or nil.
func (r *Registry) ByID(id string) *Registration {
	if r == nil {
		return nil
	}
	return r.byID[id]
}

// ExclusiveUserOwner returns a service other than except that claims the user
// exclusively, or nil.
func (r *Registry) ExclusiveUserOwner(userID string, except *Registration) *Registration {
	for _, reg := range r.All() {
		if reg != except && reg.ExclusiveUser(userID) {
			return reg
		}
	}
	return nil
}

// ExclusiveAliasOwner returns a service other than except that claims the alias
// exclusively, or nil.
func (r *Registry) ExclusiveAliasOwner(alias string, except *Registration) *Registration {
	for _, reg := range r.All() {
		if reg != except && reg.ExclusiveAlias(alias) {
			return reg
		}
	}
	return nil
}

// Load reads and validates registration files for a server. Every problem of every file
// is reported at once, each naming its file and field; ids and tokens must be unique
// across the files (an as_token or hs_token equal to any other token is refused).
func Load(files []string, serverName string) (*Registry, error) {
	var errs []error
	var regs []*Registration
	for _, f := range files {
		reg, err := loadFile(f, serverName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		regs = append(regs, reg)
	}
	ids := map[string]string{}
	tokens := map[string]string{} // token → "file (field)"
	for _, reg := range regs {
		if other, dup := ids[reg.ID]; dup {
			errs = append(errs, fmt.Errorf("application service %s: id: %q is also the id of %s", reg.File, reg.ID, other))
		} else {
			ids[reg.ID] = reg.File
		}
		for _, t := range []struct{ field, value string }{{"as_token", reg.ASToken}, {"hs_token", reg.HSToken}} {
			if other, dup := tokens[t.value]; dup {
				errs = append(errs, fmt.Errorf("application service %s: %s: the same token as %s; every token must be different", reg.File, t.field, other))
			} else {
				tokens[t.value] = reg.File + " (" + t.field + ")"
			}
		}
		for _, other := range regs {
			if other != reg && other.Sender == reg.Sender {
				errs = append(errs, fmt.Errorf("application service %s: sender_localpart: %s is also the sender of %s", reg.File, reg.Sender, other.File))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewRegistry(regs...), nil
}

// maxTokenLen bounds tokens (they are compared on every request that carries one).
const maxTokenLen = 512

// loadFile reads one registration file: the YAML is checked field by field (types, the
// url that must be given even if null, regexes that must compile), then read into
// mautrix's Registration.
func loadFile(path, serverName string) (*Registration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("application service %s: %w", path, err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("application service %s: not valid YAML: %w", path, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("application service %s: empty, or not a YAML mapping", path)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("application service %s: %s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	reg := &Registration{File: path, RateLimited: true}
	str := func(field string) string {
		v, ok := raw[field].(string)
		if !ok || v == "" {
			bad(field, "required, a non-empty string")
		}
		return v
	}
	reg.ID = str("id")
	reg.ASToken = str("as_token")
	reg.HSToken = str("hs_token")
	localpart := str("sender_localpart")
	if strings.Contains(reg.ID, "|") {
		bad("id", "may not contain '|' (third-party instance IDs are id|network)")
	}
	for _, t := range []struct{ field, v string }{{"as_token", reg.ASToken}, {"hs_token", reg.HSToken}} {
		if len(t.v) > maxTokenLen || strings.ContainsAny(t.v, " \t\r\n") {
			bad(t.field, "at most %d characters, without spaces", maxTokenLen)
		}
	}
	if reg.ASToken != "" && reg.ASToken == reg.HSToken {
		bad("hs_token", "must differ from as_token")
	}
	if localpart != "" {
		reg.Sender = "@" + localpart + ":" + serverName
		if _, _, err := id.UserID(reg.Sender).ParseAndValidateRelaxed(); err != nil || url.PathEscape(localpart) != localpart {
			bad("sender_localpart", "%q is not a valid user localpart", localpart)
		}
	}
	// url must be there, as a string or an explicit null (no pushes), so that a typo does
	// not silently turn pushes off.
	switch u := raw["url"].(type) {
	case nil:
		if _, present := raw["url"]; !present {
			bad("url", "required: the service's URL, or null for a service that receives nothing")
		}
	case string:
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad("url", "%q is not an http(s) URL", u)
		}
		reg.URL = strings.TrimRight(u, "/")
	default:
		bad("url", "must be a string or null")
	}
	if v, present := raw["rate_limited"]; present {
		b, ok := v.(bool)
		if !ok {
			bad("rate_limited", "must be true or false")
		}
		reg.RateLimited = b || !ok
	}
	for _, f := range []struct {
		field string
		dst   *bool
	}{{"receive_ephemeral", &reg.Ephemeral}, {"de.sorunome.msc2409.push_ephemeral", &reg.UnstableEphemeral}} {
		if v, present := raw[f.field]; present {
			b, ok := v.(bool)
			if !ok {
				bad(f.field, "must be true or false")
			}
			*f.dst = b
		}
	}
	if v, present := raw["protocols"]; present && v != nil {
		list, ok := v.([]any)
		if !ok {
			bad("protocols", "must be a list of strings")
		}
		for i, p := range list {
			s, ok := p.(string)
			if !ok || s == "" {
				bad(fmt.Sprintf("protocols[%d]", i), "must be a non-empty string")
				continue
			}
			reg.Protocols = append(reg.Protocols, s)
		}
	}
	nsRaw, ok := raw["namespaces"].(map[string]any)
	if !ok {
		bad("namespaces", "required, a mapping of users, aliases and rooms")
	}
	for _, kind := range []struct {
		name string
		dst  *[]Namespace
	}{{"users", &reg.users}, {"aliases", &reg.aliases}, {"rooms", &reg.rooms}} {
		v, present := nsRaw[kind.name]
		if !present || v == nil {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			bad("namespaces."+kind.name, "must be a list")
			continue
		}
		for i, item := range list {
			field := fmt.Sprintf("namespaces.%s[%d]", kind.name, i)
			m, ok := item.(map[string]any)
			if !ok {
				bad(field, "must be a mapping with regex and exclusive")
				continue
			}
			exclusive, ok := m["exclusive"].(bool)
			if !ok {
				bad(field+".exclusive", "required, true or false")
			}
			expr, ok := m["regex"].(string)
			if !ok {
				bad(field+".regex", "required, a string")
				continue
			}
			re, err := compileNamespace(expr)
			if err != nil {
				bad(field+".regex", "%q does not compile: %v", expr, err)
				continue
			}
			*kind.dst = append(*kind.dst, Namespace{Regex: re, Exclusive: exclusive})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The same file as mautrix reads it, for the fields it types (and for services built
	// on it in tests).
	if err := yaml.Unmarshal(data, &reg.Reg); err != nil {
		return nil, fmt.Errorf("application service %s: %w", path, err)
	}
	return reg, nil
}

// compileNamespace compiles a namespace regex anchored at the start, as Python's re.match
// applies it. Go's regexp (RE2) lacks backreferences and lookaround: such a regex is
// refused at start rather than matched differently.
func compileNamespace(expr string) (*regexp.Regexp, error) {
	if len(expr) > 1000 {
		return nil, errors.New("longer than 1000 characters")
	}
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)`)
}
