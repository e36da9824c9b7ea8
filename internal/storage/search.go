package storage

import (
	"context"

	"porthole/internal/stream"
)

// SearchKeys maps the keys POST /search may search in to the event type whose content
// field is indexed under it.
var SearchKeys = map[string]string{"content.body": "m.room.message", "content.name": "m.room.name", "content.topic": "m.room.topic"}

// SearchQuery is a full-text search of room events. Every word must begin a word of an
// event's indexed text (each engine tokenizes and folds case its own way: SQLite's FTS4
// unicode61, PostgreSQL's English text search, which also stems).
type SearchQuery struct {
	Words []string
	// Types are the event types searched (SearchKeys' values).
	Types []string
	// Member limits the search to the rooms this user is joined to now.
	Member string
	// RoomIDs, when not nil, limits it further to these rooms (at most MaxSearchRooms).
	RoomIDs []string
	// ByRank orders by relevance, best first, skipping Offset rows; otherwise the newest
	// come first, those before position Before (0: from the latest).
	ByRank bool
	Offset int
	Before stream.Pos
	Limit  int
}

// MaxSearchRooms is the most rooms a SearchQuery names.
const MaxSearchRooms = 500

// SearchHit is an event that matched, with its relevance (higher is better).
type SearchHit struct {
	Event
	Rank float64
}

// SearchReader runs full-text searches.
type SearchReader interface {
	// SearchEvents returns the events matching q in q's order, at most q.Limit.
	SearchEvents(ctx context.Context, q SearchQuery) ([]SearchHit, error)
	// CountSearch counts every event matching q (order and paging aside).
	CountSearch(ctx context.Context, q SearchQuery) (int, error)
}
