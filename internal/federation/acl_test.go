package federation_test

import (
	"testing"

	"porthole/internal/federation"
)

func TestServerACL(t *testing.T) {
	acl := federation.ParseServerACL([]byte(`{"allow":["*.example.org","matrix.org","ex?mple.net", 5],"deny":["evil.example.org","*.bad.example.org"],"allow_ip_literals":false}`))
	for name, want := range map[string]bool{
		"a.example.org": true, "a.example.org:8448": true, "A.EXAMPLE.ORG": true, "matrix.org": true, "exAmple.net": true,
		"example.org": false, "evil.example.org": false, "x.bad.example.org": false, "other.com": false,
		"1.2.3.4": false, "[::1]:8448": false, "not a name": false,
	} {
		if got := acl.Allows(name); got != want {
			t.Errorf("%s: allowed %v, want %v", name, got, want)
		}
	}
	// IP literals are allowed by default; a field of the wrong type counts as absent, so
	// an ACL whose allow is not a list allows nobody (as Synapse).
	if !federation.ParseServerACL([]byte(`{"allow":["*"]}`)).Allows("1.2.3.4:8448") {
		t.Error("IP literal refused by default")
	}
	if federation.ParseServerACL([]byte(`{"allow":"*"}`)).Allows("matrix.org") {
		t.Error("allow that is not a list allowed someone")
	}
}
