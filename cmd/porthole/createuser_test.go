package main

import (
	"bytes"
	"net/url"
	"os"
	"strings"
	"testing"
)

// porthole create-user works on a stopped server's database and on a running one's, and
// --admin on an existing account makes it a server admin at once (GET /admin/whois of
// another user is the admin's right).
func TestCreateUser(t *testing.T) {
	dir := t.TempDir()
	createUserCmd := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(append([]string{"create-user", "--data", dir}, args...), strings.NewReader("from-stdin\n"), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	os.Setenv("PORTHOLE_BCRYPT_COST", "4")
	defer os.Unsetenv("PORTHOLE_BCRYPT_COST")
	if out, err := createUserCmd("--admin", "--password", "root-pw", "root"); err != nil || !strings.Contains(out, "created @root:localhost (server admin)") {
		t.Fatalf("stopped server: %v %s", err, out)
	}
	if _, err := createUserCmd("--password", "x", "root"); err == nil {
		t.Fatal("an existing account was created again")
	}
	if _, err := createUserCmd("--password", "x", "Not Valid"); err == nil {
		t.Fatal("an invalid localpart was accepted")
	}
	if _, err := createUserCmd("nopassword"); err == nil {
		t.Fatal("an account without a password was created")
	}

	p := startServer(t, dir)
	login := func(user, pw string) string {
		t.Helper()
		return mustCall(t, p.url, "POST", "login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": user}, "password": pw})["access_token"].(string)
	}
	root := login("root", "root-pw")
	// Created while the server runs, password from standard input.
	if out, err := createUserCmd("--password-file", "-", "late"); err != nil || !strings.Contains(out, "created @late:localhost") {
		t.Fatalf("running server: %v %s", err, out)
	}
	late := login("late", "from-stdin")
	mustCall(t, p.url, "GET", "admin/whois/"+url.PathEscape("@late:localhost"), root, nil)
	if status, _, _ := call(t, p.url, "GET", "admin/whois/"+url.PathEscape("@root:localhost"), late, nil); status != 403 {
		t.Fatalf("a non-admin looked up another user: %d", status)
	}
	if out, err := createUserCmd("--admin", "late"); err != nil || !strings.Contains(out, "@late:localhost is now a server admin") {
		t.Fatalf("promotion: %v %s", err, out)
	}
	mustCall(t, p.url, "GET", "admin/whois/"+url.PathEscape("@root:localhost"), late, nil)
}
