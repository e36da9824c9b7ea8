// Package stream holds Porthole's one global stream position, the tokens that carry it to
// clients, and the Notifier that wakes long-polls when the position advances.
//
// Every item /sync and /events serve (room events, typing, receipts, presence, account data)
// takes the next position from one counter when it is committed, so a single integer says
// "everything up to here". Tokens are "s<pos>". For compatibility with clients that learnt
// Synapse's token shape, trailing "_<n>" parts are accepted and ignored.
package stream

import (
	"errors"
	"strconv"
	"strings"
)

// Pos is a position in the global stream. Position p means "after the item numbered p".
type Pos int64

// ErrBadToken is returned for a token that Porthole did not hand out.
var ErrBadToken = errors.New("invalid stream token")

// maxExtraParts bounds the ignored "_n" parts so garbage is still rejected.
const maxExtraParts = 12

// Token formats a position as a client token.
func (p Pos) Token() string {
	return "s" + strconv.FormatInt(int64(p), 10)
}

func (p Pos) String() string { return p.Token() }

// AppendToken appends the token form of p to b without allocating.
func (p Pos) AppendToken(b []byte) []byte {
	b = append(b, 's')
	return strconv.AppendInt(b, int64(p), 10)
}

// ParseToken parses a token produced by Token. It accepts "s<n>" with optional "_<n>" parts
// and "t<depth>-<n>" topological tokens (Synapse's pagination shape), using only the stream
// part. Anything else, negative or overflowing numbers included, is ErrBadToken.
func ParseToken(s string) (Pos, error) {
	if len(s) < 2 || len(s) > 200 {
		return 0, ErrBadToken
	}
	head, rest, _ := strings.Cut(s, "_")
	if len(head) < 2 {
		return 0, ErrBadToken
	}
	if rest != "" || strings.HasSuffix(s, "_") {
		parts := strings.Split(rest, "_")
		if len(parts) > maxExtraParts {
			return 0, ErrBadToken
		}
		for _, p := range parts {
			if !isDigits(p) {
				return 0, ErrBadToken
			}
		}
	}
	var num string
	switch head[0] {
	case 's':
		num = head[1:]
	case 't':
		_, after, ok := strings.Cut(head[1:], "-")
		if !ok || !isDigits(head[1:strings.IndexByte(head, '-')]) {
			return 0, ErrBadToken
		}
		num = after
	default:
		return 0, ErrBadToken
	}
	if !isDigits(num) {
		return 0, ErrBadToken
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, ErrBadToken
	}
	return Pos(n), nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
