// Package userdir holds the pure parts of the user directory (POST /user_directory/search):
// the words a user is found by, the words of a search, and how well a user matches.
// Storage keeps each user's words in an index; the rooms service decides who may be
// found by whom.
package userdir

import (
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Bounds on the words of one user and of one search.
const (
	MaxWordLen    = 64
	MaxUserWords  = 32
	MaxQueryWords = 8
)

// normalize makes text comparable: NFKC (visually identical strings become the same, "ǆ"
// becomes "dž") and lower case, as Synapse's _filter_text_for_index does.
func normalize(s string) string {
	return strings.ToLower(norm.NFKC.String(s))
}

// split cuts text into words: runs of letters, digits and marks.
func split(s string) []string {
	return strings.FieldsFunc(normalize(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
	})
}

func clip(w string) string {
	if len(w) <= MaxWordLen {
		return w
	}
	// Cut on a rune boundary.
	n := MaxWordLen
	for n > 0 && !utf8RuneStart(w[n]) {
		n--
	}
	return w[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// Words returns the distinct words a user is found by: those of the user ID (localpart
// and server name) and of the display name, sorted, at most MaxUserWords.
func Words(userID string, displayName *string) []string {
	all := split(userID)
	if displayName != nil {
		all = append(all, split(*displayName)...)
	}
	seen := make(map[string]bool, len(all))
	out := make([]string, 0, len(all))
	for _, w := range all {
		w = clip(w)
		if w != "" && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	sort.Strings(out)
	if len(out) > MaxUserWords {
		out = out[:MaxUserWords]
	}
	return out
}

// QueryWords returns the words of a search term, each of which must begin a word of a
// user found (at most MaxQueryWords; none for a term without letters or digits).
func QueryWords(term string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range split(term) {
		w = clip(w)
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
		if len(out) == MaxQueryWords {
			break
		}
	}
	return out
}

// Score says how well a user matches the query's words (higher is better; 0 when a word
// begins none of the user's words). A word that is a whole word counts more than one that
// begins it, a display name's words more than the user ID's, and a user with a display
// name or an avatar a little more, as Synapse's ranking does.
func Score(query []string, userID string, displayName, avatarURL *string) float64 {
	idWords := split(userID)
	var nameWords []string
	if displayName != nil {
		nameWords = split(*displayName)
	}
	score := 0.0
	for _, q := range query {
		best := 0.0
		for _, w := range nameWords {
			best = max(best, wordScore(q, w, 3))
		}
		for _, w := range idWords {
			best = max(best, wordScore(q, w, 2))
		}
		if best == 0 {
			return 0
		}
		score += best
	}
	if displayName != nil && *displayName != "" {
		score *= 1.2
	}
	if avatarURL != nil && *avatarURL != "" {
		score *= 1.2
	}
	return score
}

func wordScore(q, w string, weight float64) float64 {
	w = clip(w)
	switch {
	case w == q:
		return weight
	case strings.HasPrefix(w, q):
		return weight / 3
	}
	return 0
}
