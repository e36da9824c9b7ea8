package appservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeReg(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const bridgeYAML = `
id: bridge
url: http://127.0.0.1:29318
as_token: as-secret
hs_token: hs-secret
sender_localpart: bridgebot
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
protocols: [irc]
namespaces:
  users:
    - exclusive: false
      regex: '@_shared_.*:example\.org'
    - exclusive: true
      regex: '@irc_.*:example\.org'
  aliases:
    - exclusive: true
      regex: '#irc_.*'
  rooms:
    - exclusive: false
      regex: '!bridged.*'
`

func TestNamespaceMatching(t *testing.T) {
	reg, err := Load([]string{writeReg(t, t.TempDir(), "bridge.yaml", bridgeYAML)}, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	r := reg.ByID("bridge")
	if r == nil || reg.ByToken("as-secret") != r || reg.ByToken("hs-secret") != nil {
		t.Fatalf("lookups: by id %v, by as_token %v, by hs_token %v", r, reg.ByToken("as-secret"), reg.ByToken("hs-secret"))
	}
	if r.RateLimited || r.Ephemeral || !r.UnstableEphemeral || !r.HasProtocol("irc") || r.Sender != "@bridgebot:example.org" {
		t.Errorf("fields: %+v", r)
	}
	users := []struct {
		user                  string
		inNS, interested, exc bool
	}{
		{"@irc_alice:example.org", true, true, true},
		{"@irc_:example.org", true, true, true},
		{"@_shared_bob:example.org", true, true, false},
		{"@bridgebot:example.org", false, true, true},
		{"@alice:example.org", false, false, false},
		{"@xirc_alice:example.org", false, false, false},  // anchored at the start
		{"@irc_alice:example.org.evil", true, true, true}, // but not at the end, as re.match
		{"@irc_alice:exampleXorg", false, false, false},   // escaped dot
	}
	for _, c := range users {
		if got := r.UserInNamespace(c.user); got != c.inNS {
			t.Errorf("UserInNamespace(%s) = %v", c.user, got)
		}
		if got := r.InterestedInUser(c.user); got != c.interested {
			t.Errorf("InterestedInUser(%s) = %v", c.user, got)
		}
		if got := r.ExclusiveUser(c.user); got != c.exc {
			t.Errorf("ExclusiveUser(%s) = %v", c.user, got)
		}
	}
	aliases := []struct {
		alias     string
		inNS, exc bool
	}{
		{"#irc_freenode_#go:example.org", true, true},
		{"#comments:example.org", false, false},
	}
	for _, c := range aliases {
		if r.AliasInNamespace(c.alias) != c.inNS || r.ExclusiveAlias(c.alias) != c.exc {
			t.Errorf("alias %s: in %v exclusive %v", c.alias, r.AliasInNamespace(c.alias), r.ExclusiveAlias(c.alias))
		}
	}
	if !r.RoomInNamespace("!bridged123:example.org") || r.RoomInNamespace("!other:example.org") {
		t.Error("room namespace")
	}
	if reg.ExclusiveUserOwner("@irc_x:example.org", nil) != r || reg.ExclusiveUserOwner("@irc_x:example.org", r) != nil ||
		reg.ExclusiveUserOwner("@_shared_x:example.org", nil) != nil {
		t.Error("ExclusiveUserOwner")
	}
	if reg.ExclusiveAliasOwner("#irc_x:example.org", nil) != r || reg.ExclusiveAliasOwner("#y:example.org", nil) != nil {
		t.Error("ExclusiveAliasOwner")
	}
}

// TestFirstMatchingNamespaceDecides: a user in a non-exclusive namespace listed before an
// exclusive one that also matches is not exclusive (Synapse's rule).
func TestFirstMatchingNamespaceDecides(t *testing.T) {
	body := strings.Replace(bridgeYAML, `'@irc_.*:example\.org'`, `'@_shared_x.*'`, 1)
	reg, err := Load([]string{writeReg(t, t.TempDir(), "r.yaml", body)}, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if reg.ByID("bridge").ExclusiveUser("@_shared_xy:example.org") {
		t.Error("the first matching namespace is not exclusive")
	}
}

func TestNullURLAndDefaults(t *testing.T) {
	body := "id: quiet\nurl: null\nas_token: a\nhs_token: h\nsender_localpart: q\nnamespaces: {}\n"
	reg, err := Load([]string{writeReg(t, t.TempDir(), "q.yaml", body)}, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	r := reg.ByID("quiet")
	if r.URL != "" || !r.RateLimited || r.Ephemeral {
		t.Errorf("%+v", r)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ok := func(id, as, hs string) string {
		return "id: " + id + "\nurl: http://127.0.0.1:1\nas_token: " + as + "\nhs_token: " + hs + "\nsender_localpart: " + id + "\nnamespaces: {}\n"
	}
	cases := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"not YAML", map[string]string{"a.yaml": "id: [unclosed"}, []string{"a.yaml", "not valid YAML"}},
		{"not a mapping", map[string]string{"a.yaml": "- just\n- a list\n"}, []string{"a.yaml", "not valid YAML"}},
		{"missing fields", map[string]string{"a.yaml": "namespaces: {}\nurl: null\n"},
			[]string{"a.yaml: id: required", "a.yaml: as_token: required", "a.yaml: hs_token: required", "a.yaml: sender_localpart: required"}},
		{"missing url", map[string]string{"a.yaml": "id: a\nas_token: x\nhs_token: y\nsender_localpart: a\nnamespaces: {}\n"}, []string{"a.yaml: url: required"}},
		{"bad url", map[string]string{"a.yaml": strings.Replace(ok("a", "x", "y"), "http://127.0.0.1:1", "ftp://x", 1)}, []string{"a.yaml: url:"}},
		{"bad regex", map[string]string{"a.yaml": strings.Replace(ok("a", "x", "y"), "namespaces: {}", "namespaces:\n  users:\n    - exclusive: true\n      regex: '@(unclosed'", 1)},
			[]string{"a.yaml: namespaces.users[0].regex:", "does not compile"}},
		{"lookahead", map[string]string{"a.yaml": strings.Replace(ok("a", "x", "y"), "namespaces: {}", "namespaces:\n  aliases:\n    - exclusive: true\n      regex: '#(?!x).*'", 1)},
			[]string{"a.yaml: namespaces.aliases[0].regex:"}},
		{"exclusive not a bool", map[string]string{"a.yaml": strings.Replace(ok("a", "x", "y"), "namespaces: {}", "namespaces:\n  rooms:\n    - exclusive: 'yes'\n      regex: '!x'", 1)},
			[]string{"a.yaml: namespaces.rooms[0].exclusive:"}},
		{"no namespaces", map[string]string{"a.yaml": strings.Replace(ok("a", "x", "y"), "namespaces: {}\n", "", 1)}, []string{"a.yaml: namespaces: required"}},
		{"duplicate id", map[string]string{"a.yaml": ok("same", "x1", "y1"), "b.yaml": strings.Replace(ok("same", "x2", "y2"), "sender_localpart: same", "sender_localpart: other", 1)},
			[]string{"b.yaml: id:", "a.yaml"}},
		{"duplicate as_token", map[string]string{"a.yaml": ok("a", "tok", "y1"), "b.yaml": ok("b", "tok", "y2")}, []string{"b.yaml: as_token: the same token as", "a.yaml (as_token)"}},
		{"hs_token equal to another as_token", map[string]string{"a.yaml": ok("a", "tok", "y1"), "b.yaml": ok("b", "x2", "tok")}, []string{"b.yaml: hs_token: the same token as", "a.yaml (as_token)"}},
		{"own tokens equal", map[string]string{"a.yaml": ok("a", "tok", "tok")}, []string{"a.yaml: hs_token: must differ"}},
		{"pipe in id", map[string]string{"a.yaml": ok("a|b", "x", "y")}, []string{"a.yaml: id: may not contain"}},
		{"unreadable", map[string]string{}, []string{"missing.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			os.MkdirAll(sub, 0o700)
			var paths []string
			for _, n := range []string{"a.yaml", "b.yaml"} {
				if body, ok := c.files[n]; ok {
					paths = append(paths, writeReg(t, sub, n, body))
				}
			}
			if len(paths) == 0 {
				paths = []string{filepath.Join(sub, "missing.yaml")}
			}
			_, err := Load(paths, "example.org")
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
