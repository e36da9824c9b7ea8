package rooms

import (
	"context"
	"sort"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/userdir"
)

// DirectoryUser is one result of a user directory search.
type DirectoryUser struct {
	UserID      string  `json:"user_id"`
	DisplayName *string `json:"display_name,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// Bounds of a user directory search.
const (
	// MaxDirectoryResults is the most results one search returns (Synapse's cap; 10 is
	// the default).
	MaxDirectoryResults = 50
	// directoryCandidates is how many matching users one search ranks.
	directoryCandidates = 1000
)

// SearchUsers answers POST /user_directory/search: users any of whose words begin with
// each word of the term, among those who share a room with the searcher or are in a room
// anyone may join or read (or every user, with SearchAllUsers), best match first. limited
// says whether there were more.
func (s *Service) SearchUsers(ctx context.Context, sess *auth.Session, term string, limit int) ([]DirectoryUser, bool, error) {
	words := userdir.QueryWords(term)
	if len(words) == 0 || limit == 0 {
		return []DirectoryUser{}, false, nil
	}
	found, err := s.store.SearchUserDirectory(ctx, storage.DirectoryQuery{Searcher: sess.UserID, Words: words, AllUsers: s.cfg.SearchAllUsers, Limit: directoryCandidates})
	if err != nil {
		return nil, false, mxerr.Internal(err)
	}
	type ranked struct {
		storage.DirectoryEntry
		score float64
	}
	all := make([]ranked, 0, len(found))
	for _, e := range found {
		if sc := userdir.Score(words, e.UserID, e.DisplayName, e.AvatarURL); sc > 0 {
			all = append(all, ranked{e, sc})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.score != b.score {
			return a.score > b.score
		}
		if (a.DisplayName == nil) != (b.DisplayName == nil) {
			return a.DisplayName != nil
		}
		if a.DisplayName != nil && !strings.EqualFold(*a.DisplayName, *b.DisplayName) {
			return strings.ToLower(*a.DisplayName) < strings.ToLower(*b.DisplayName)
		}
		return a.UserID < b.UserID
	})
	limited := len(all) > limit || len(found) == directoryCandidates
	if len(all) > limit {
		all = all[:limit]
	}
	out := make([]DirectoryUser, len(all))
	for i, e := range all {
		out[i] = DirectoryUser{UserID: e.UserID, DisplayName: e.DisplayName, AvatarURL: e.AvatarURL}
	}
	return out, limited, nil
}
