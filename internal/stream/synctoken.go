package stream

import (
	"strconv"
	"strings"
)

// A /sync next_batch is "s<pos>" or, when the to-device messages sent with it stop short
// of pos (a device with more waiting than one response carries), "s<pos>_<last>" with
// the position of the last message sent: the next /sync deletes the inbox only up to what
// the client has. ParseToken reads both (the extra part is ignored elsewhere).

// SyncToken formats a /sync next_batch.
func SyncToken(pos, toDevice Pos) string {
	if toDevice >= pos {
		return pos.Token()
	}
	return pos.Token() + "_" + strconv.FormatInt(int64(toDevice), 10)
}

// ToDeviceAck returns the to-device position a /sync since token acknowledges, when the
// token has one apart from its stream position.
func ToDeviceAck(token string) (Pos, bool) {
	_, rest, ok := strings.Cut(token, "_")
	if !ok || strings.Contains(rest, "_") || !isDigits(rest) {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return 0, false
	}
	return Pos(n), true
}
