package client_test

import (
	"strings"
	"testing"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

func TestVersionsWellKnownCapabilities(t *testing.T) {
	s := hstest.New(t)
	r := s.Anon().Must(t, 200, "GET", "/_matrix/client/versions", nil)
	if !strings.Contains(r.Get("versions").Raw, `"v1.12"`) || !strings.Contains(r.Get("versions").Raw, `"r0.6.1"`) {
		t.Fatalf("versions: %s", r)
	}
	if s.Anon().Must(t, 200, "GET", "/.well-known/matrix/client", nil).Get("m\\.homeserver.base_url").String() == "" {
		t.Fatal("well-known without base_url")
	}
	u := s.Register(t, "")
	caps := u.Must(t, 200, "GET", "capabilities", nil).Get("capabilities.m\\.room_versions")
	if caps.Get("default").String() != "10" {
		t.Fatalf("default room version: %s", caps.Raw)
	}
	for _, v := range []string{"10", "11", "12"} {
		if caps.Get("available."+v).String() != "stable" {
			t.Fatalf("room version %s not stable: %s", v, caps.Raw)
		}
	}
	hstest.New(t, func(c *config.Config) { c.DefaultRoomVer = "12" }).Register(t, "").
		Must(t, 200, "GET", "capabilities", nil)
}

func TestCORSAndOptions(t *testing.T) {
	s := hstest.New(t)
	for _, method := range []string{"OPTIONS", "GET"} {
		req := s.Anon()
		r := req.Do(t, method, "/_matrix/client/versions", nil)
		if r.Status != 200 {
			t.Fatalf("%s: %s", method, r)
		}
	}
}

func TestRegistrationUIA(t *testing.T) {
	s := hstest.New(t)
	anon := s.Anon()
	r := anon.Must(t, 401, "POST", "register", map[string]any{"username": "bob", "password": "secret"})
	if r.Get("session").String() == "" || r.Get("flows.0.stages.0").String() != "m.login.dummy" {
		t.Fatalf("UIA challenge: %s", r)
	}
	// Nothing was created by the challenge.
	anon.Must(t, 200, "GET", "register/available?username=bob", nil)
	r = anon.Must(t, 200, "POST", "register", map[string]any{"username": "bob", "password": "secret",
		"auth": map[string]any{"type": "m.login.dummy", "session": r.Get("session").String()}})
	if r.Get("user_id").String() != "@bob:localhost" || r.Get("access_token").String() == "" || r.Get("device_id").String() == "" {
		t.Fatalf("register: %s", r)
	}
	bob := &hstest.Client{S: s, Token: r.Get("access_token").String()}
	w := bob.Must(t, 200, "GET", "account/whoami", nil)
	if w.Get("user_id").String() != "@bob:localhost" || w.Get("is_guest").Bool() || w.Get("device_id").String() != r.Get("device_id").String() {
		t.Fatalf("whoami: %s", w)
	}
	anon.MustErr(t, 400, "M_USER_IN_USE", "GET", "register/available?username=bob", nil)
	anon.MustErr(t, 400, "M_USER_IN_USE", "POST", "register", map[string]any{"username": "bob", "password": "x", "auth": map[string]any{"type": "m.login.dummy"}})
	anon.MustErr(t, 400, "M_INVALID_USERNAME", "POST", "register", map[string]any{"username": "Bad Name", "password": "x", "auth": map[string]any{"type": "m.login.dummy"}})
	anon.MustErr(t, 400, "M_INVALID_USERNAME", "POST", "register", map[string]any{"username": "12345", "password": "x", "auth": map[string]any{"type": "m.login.dummy"}})
	anon.MustErr(t, 400, "M_INVALID_USERNAME", "GET", "register/available?username=%C3%A9", nil)

	// inhibit_login: an account but no token.
	r = anon.Must(t, 200, "POST", "register", map[string]any{"username": "carol", "password": "pw", "inhibit_login": true, "auth": map[string]any{"type": "m.login.dummy"}})
	if r.Get("access_token").Exists() || r.Get("user_id").String() != "@carol:localhost" {
		t.Fatalf("inhibit_login: %s", r)
	}
	// Unknown kind.
	anon.MustErr(t, 400, "M_UNRECOGNIZED", "POST", "register?kind=robot", map[string]any{})
}

func TestRegistrationClosed(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.Registration = "closed"; c.Guests = "off" })
	s.Anon().MustErr(t, 403, "M_FORBIDDEN", "POST", "register", map[string]any{"username": "x", "password": "y", "auth": map[string]any{"type": "m.login.dummy"}})
	s.Anon().MustErr(t, 403, "M_UNKNOWN", "POST", "register?kind=guest", map[string]any{})
}

func TestGuestRegistration(t *testing.T) {
	s := hstest.New(t)
	anon := s.Anon()
	// The body is ignored (but must be JSON when given).
	r := anon.Must(t, 200, "POST", "register?kind=guest", map[string]any{"username": "ignored", "password": "ignored"})
	uid := r.Get("user_id").String()
	local := strings.TrimSuffix(strings.TrimPrefix(uid, "@"), ":localhost")
	if local == "" || strings.Trim(local, "0123456789") != "" {
		t.Fatalf("guest user ID not numeric: %s", r)
	}
	g := &hstest.Client{S: s, Token: r.Get("access_token").String()}
	if w := g.Must(t, 200, "GET", "account/whoami", nil); !w.Get("is_guest").Bool() || w.Get("user_id").String() != uid {
		t.Fatalf("whoami: %s", w)
	}
	r2 := anon.Must(t, 200, "POST", "register?kind=guest", nil)
	if r2.Get("user_id").String() == uid {
		t.Fatal("two guests got the same user ID")
	}
	anon.MustErr(t, 400, "M_NOT_JSON", "POST", "register?kind=guest", "{nope")
}

func TestLoginLogout(t *testing.T) {
	s := hstest.New(t)
	s.Register(t, "dave")
	anon := s.Anon()
	flows := anon.Must(t, 200, "GET", "login", nil)
	if flows.Get("flows.0.type").String() != "m.login.password" {
		t.Fatalf("login flows: %s", flows)
	}
	login := func(body map[string]any) *hstest.Client {
		r := anon.Must(t, 200, "POST", "login", body)
		if r.Get("user_id").String() != "@dave:localhost" {
			t.Fatalf("login: %s", r)
		}
		return &hstest.Client{S: s, UserID: "@dave:localhost", Token: r.Get("access_token").String(), DeviceID: r.Get("device_id").String()}
	}
	c1 := login(map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "dave"}, "password": "pw-dave"})
	c2 := login(map[string]any{"type": "m.login.password", "user": "@dave:localhost", "password": "pw-dave"})
	anon.MustErr(t, 403, "M_FORBIDDEN", "POST", "login", map[string]any{"type": "m.login.password", "user": "dave", "password": "wrong"})
	anon.MustErr(t, 403, "M_FORBIDDEN", "POST", "login", map[string]any{"type": "m.login.password", "user": "nobody", "password": "x"})
	anon.MustErr(t, 400, "M_UNKNOWN", "POST", "login", map[string]any{"type": "m.login.magic"})

	c1.Must(t, 200, "POST", "logout", map[string]any{})
	c1.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
	c2.Must(t, 200, "GET", "account/whoami", nil)
	c3 := login(map[string]any{"type": "m.login.password", "user": "dave", "password": "pw-dave"})
	c3.Must(t, 200, "POST", "logout/all", map[string]any{})
	c2.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
	c3.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
}

func TestTokenSources(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "")
	anon := s.Anon()
	anon.MustErr(t, 401, "M_MISSING_TOKEN", "GET", "account/whoami", nil)
	anon.Must(t, 200, "GET", "account/whoami?access_token="+u.Token, nil)
	anon.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami?access_token=garbage", nil)
	bad := &hstest.Client{S: s, Token: "ph_not-a-token"}
	bad.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
	// r0 serves the same API.
	anon.Must(t, 200, "GET", "/_matrix/client/r0/account/whoami?access_token="+u.Token, nil)
}

func TestPasswordChangeAndDevices(t *testing.T) {
	s := hstest.New(t)
	u := s.Register(t, "erin")
	other := s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": "erin", "password": "pw-erin", "initial_device_display_name": "phone"})
	otherC := &hstest.Client{S: s, Token: other.Get("access_token").String()}

	devs := u.Must(t, 200, "GET", "devices", nil).Get("devices")
	if len(devs.Array()) != 2 {
		t.Fatalf("devices: %s", devs.Raw)
	}
	dev := other.Get("device_id").String()
	if got := u.Must(t, 200, "GET", "devices/"+dev, nil).Get("display_name").String(); got != "phone" {
		t.Fatalf("device display name %q", got)
	}
	u.Must(t, 200, "PUT", "devices/"+dev, map[string]any{"display_name": "tablet"})
	if got := u.Must(t, 200, "GET", "devices/"+dev, nil).Get("display_name").String(); got != "tablet" {
		t.Fatalf("renamed device %q", got)
	}
	u.MustErr(t, 404, "M_NOT_FOUND", "GET", "devices/NOPE", nil)
	// Deleting a device needs UIA with the password.
	r := u.Must(t, 401, "DELETE", "devices/"+dev, map[string]any{})
	if r.Get("flows.0.stages.0").String() != "m.login.password" {
		t.Fatalf("device delete challenge: %s", r)
	}
	u.Must(t, 401, "DELETE", "devices/"+dev, map[string]any{"auth": map[string]any{"type": "m.login.password", "user": "erin", "password": "wrong", "session": r.Get("session").String()}})
	u.Must(t, 200, "DELETE", "devices/"+dev, map[string]any{"auth": map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "erin"}, "password": "pw-erin", "session": r.Get("session").String()}})
	otherC.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)

	// Password change logs out other devices by default.
	third := s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": "erin", "password": "pw-erin"})
	thirdC := &hstest.Client{S: s, Token: third.Get("access_token").String()}
	u.Must(t, 401, "POST", "account/password", map[string]any{"new_password": "new"})
	u.Must(t, 200, "POST", "account/password", map[string]any{"new_password": "new", "auth": map[string]any{"type": "m.login.password", "user": "erin", "password": "pw-erin"}})
	thirdC.MustErr(t, 401, "M_UNKNOWN_TOKEN", "GET", "account/whoami", nil)
	u.Must(t, 200, "GET", "account/whoami", nil)
	s.Anon().MustErr(t, 403, "M_FORBIDDEN", "POST", "login", map[string]any{"type": "m.login.password", "user": "erin", "password": "pw-erin"})
	s.Anon().Must(t, 200, "POST", "login", map[string]any{"type": "m.login.password", "user": "erin", "password": "new"})
}
