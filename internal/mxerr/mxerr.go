// Package mxerr defines Matrix errors: an errcode and the HTTP status it travels with,
// chosen together in one place so handlers never pick a status by hand.
package mxerr

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a Matrix error response: {"errcode": Code, "error": Message} with Status.
// Extra holds additional top-level fields (retry_after_ms, UIA flows, soft_logout, ...).
// Err is the internal cause; it is logged, never sent to the client.
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s (%d): %s: %v", e.Code, e.Status, e.Message, e.Err)
	}
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Body is the JSON object sent to the client.
func (e *Error) Body() map[string]any {
	body := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		body[k] = v
	}
	if e.Code != "" {
		body["errcode"] = e.Code
	}
	if e.Message != "" {
		body["error"] = e.Message
	}
	return body
}

// With returns a copy of e carrying the internal cause err.
func (e *Error) With(err error) *Error {
	c := *e
	c.Err = err
	return &c
}

// As extracts a *Error from err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func newErr(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

func Forbidden(msg string) *Error { return newErr(http.StatusForbidden, "M_FORBIDDEN", msg) }
func GuestAccessForbidden() *Error {
	return newErr(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
}
func MissingToken() *Error {
	return newErr(http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
}
func UnknownToken(msg string) *Error { return newErr(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", msg) }
func NotJSON(msg string) *Error      { return newErr(http.StatusBadRequest, "M_NOT_JSON", msg) }
func BadJSON(msg string) *Error      { return newErr(http.StatusBadRequest, "M_BAD_JSON", msg) }
func NotFound(msg string) *Error     { return newErr(http.StatusNotFound, "M_NOT_FOUND", msg) }
func Unrecognized(msg string) *Error { return newErr(http.StatusNotFound, "M_UNRECOGNIZED", msg) }
func MethodNotAllowed() *Error {
	return newErr(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "Unrecognized request method")
}
func TooLarge(msg string) *Error     { return newErr(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", msg) }
func InvalidParam(msg string) *Error { return newErr(http.StatusBadRequest, "M_INVALID_PARAM", msg) }
func MissingParam(msg string) *Error { return newErr(http.StatusBadRequest, "M_MISSING_PARAM", msg) }
func Unknown(msg string) *Error      { return newErr(http.StatusBadRequest, "M_UNKNOWN", msg) }
func UserInUse(msg string) *Error    { return newErr(http.StatusBadRequest, "M_USER_IN_USE", msg) }
func InvalidUsername(msg string) *Error {
	return newErr(http.StatusBadRequest, "M_INVALID_USERNAME", msg)
}
func RoomInUse(msg string) *Error { return newErr(http.StatusBadRequest, "M_ROOM_IN_USE", msg) }
func InvalidRoomState(msg string) *Error {
	return newErr(http.StatusBadRequest, "M_INVALID_ROOM_STATE", msg)
}
func UnsupportedRoomVersion(msg string) *Error {
	return newErr(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", msg)
}
func UserDeactivated() *Error {
	return newErr(http.StatusForbidden, "M_USER_DEACTIVATED", "This account has been deactivated")
}
func LimitExceeded(retryAfterMS int64) *Error {
	e := newErr(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "Too many requests")
	e.Extra = map[string]any{"retry_after_ms": retryAfterMS}
	return e
}
func Internal(err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "M_UNKNOWN", Message: "Internal server error", Err: err}
}

// ThreepidChangesDisabled is Synapse's answer to adding or removing a third-party
// identifier when the server does not allow it: 400 M_FORBIDDEN.
func ThreepidChangesDisabled() *Error {
	return newErr(http.StatusBadRequest, "M_FORBIDDEN", "3PID changes are disabled on this server")
}
func ThreepidMediumNotSupported(msg string) *Error {
	return newErr(http.StatusBadRequest, "M_THREEPID_MEDIUM_NOT_SUPPORTED", msg)
}
func ServerNotTrusted(msg string) *Error {
	return newErr(http.StatusBadRequest, "M_SERVER_NOT_TRUSTED", msg)
}

// Unauthorized is a server-server request without a valid signature (or not meant for us).
func Unauthorized(msg string) *Error {
	return newErr(http.StatusUnauthorized, "M_UNAUTHORIZED", msg)
}

// MalformedAuth is a server-server request whose X-Matrix header cannot be parsed (400, as
// Synapse answers it).
func MalformedAuth(msg string) *Error { return newErr(http.StatusBadRequest, "M_UNAUTHORIZED", msg) }

// Exclusive: a user ID or alias is reserved by an application service (or outside the
// calling service's namespaces).
func Exclusive(status int, msg string) *Error { return newErr(status, "M_EXCLUSIVE", msg) }
func UnknownDevice(msg string) *Error         { return newErr(http.StatusBadRequest, "M_UNKNOWN_DEVICE", msg) }
func CannotOverwriteMedia() *Error {
	return newErr(http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content")
}
func NotYetUploaded() *Error {
	return newErr(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
}

// BadGateway is a failure of another server this one needed (502 M_UNKNOWN).
func BadGateway(msg string) *Error { return newErr(http.StatusBadGateway, "M_UNKNOWN", msg) }
