package media

import (
	"crypto/rand"
	"strings"

	"maunium.net/go/mautrix/id"
)

// maxMediaIDLength bounds the media IDs accepted in paths.
const maxMediaIDLength = 255

// newMediaID makes a media ID: 26 characters of base32 (A-Z, 2-7), 128 random bits.
func newMediaID() string { return rand.Text() }

// ValidMediaID reports whether s may be the media ID of an mxc:// URI: only A-Z, a-z,
// 0-9, "_" and "-" (the spec's rule, which keeps IDs out of paths and headers).
func ValidMediaID(s string) bool {
	if s == "" || len(s) > maxMediaIDLength {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// ValidServerName reports whether s is a server name (the spec's grammar).
func ValidServerName(s string) bool { return id.ValidateServerName(s) }

// MXC formats an mxc:// URI.
func MXC(serverName, mediaID string) string { return "mxc://" + serverName + "/" + mediaID }
