package federation

import (
	"context"
	"net/netip"
	"regexp"
	"strings"

	"github.com/tidwall/gjson"
	mfed "maunium.net/go/mautrix/federation"

	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// ServerACL is the content of an m.room.server_acl event.
type ServerACL struct {
	Allow           []string `json:"allow"`
	Deny            []string `json:"deny"`
	AllowIPLiterals *bool    `json:"allow_ip_literals"`
}

// Allows applies the ACL to a server (spec: server access control lists): the name's
// host, without its port, must match no deny pattern and some allow pattern (globs with
// * and ?, case-insensitive), and be no IP literal unless those are allowed.
func (acl ServerACL) Allows(serverName string) bool {
	host, _, ok := mfed.ParseServerName(serverName)
	if !ok {
		return false
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && acl.AllowIPLiterals != nil && !*acl.AllowIPLiterals {
		return false
	}
	if strings.HasPrefix(serverName, "[") {
		host = "[" + host + "]"
	}
	for _, d := range acl.Deny {
		if globMatch(d, host) {
			return false
		}
	}
	for _, a := range acl.Allow {
		if globMatch(a, host) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s string) bool {
	re := "(?is)^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	m, err := regexp.MatchString(re, s)
	return err == nil && m
}

// allowedByACL refuses origin when the room's current server ACL denies it (403).
func (in *Inbound) allowedByACL(ctx context.Context, roomID, origin string) error {
	evs, err := in.store.CurrentState(ctx, roomID, storage.StateKeyOf{Type: "m.room.server_acl"})
	if err != nil {
		return mxerr.Internal(err)
	}
	if len(evs) == 0 {
		return nil
	}
	if !ParseServerACL(clientevent.Content(&evs[0])).Allows(origin) {
		return mxerr.Forbidden("Server is banned from room")
	}
	return nil
}

// ParseServerACL reads an ACL's content as Synapse does: a field of the wrong type counts
// as absent (so allow defaults to nobody), entries that are not strings are skipped.
func ParseServerACL(content []byte) ServerACL {
	c := gjson.ParseBytes(content)
	strs := func(key string) []string {
		var out []string
		list := c.Get(key)
		if !list.IsArray() {
			return nil
		}
		for _, v := range list.Array() {
			if v.Type == gjson.String {
				out = append(out, v.Str)
			}
		}
		return out
	}
	acl := ServerACL{Allow: strs("allow"), Deny: strs("deny")}
	if v := c.Get("allow_ip_literals"); v.IsBool() {
		b := v.Bool()
		acl.AllowIPLiterals = &b
	}
	return acl
}
