package syncer

import (
	"context"
	"encoding/base64"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"slices"
	"strconv"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/filter"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/stream"
	"porthole/internal/userdir"
)

// SearchRequest is a parsed POST /search (its room_events category).
type SearchRequest struct {
	Term string
	// Keys are the content keys searched (storage.SearchKeys); unknown ones match nothing.
	Keys   []string
	Filter *filter.RoomEventFilter
	// Limit is the filter's limit (10 when it gives none).
	Limit  int
	ByRank bool
	// Context, when set, asks for the events around each result.
	Context       *SearchContext
	IncludeState  bool
	GroupByRoom   bool
	GroupBySender bool
	// NextBatch is the next_batch query parameter ("" for the first page).
	NextBatch string
}

// SearchContext is event_context: how many events before and after each result, and
// whether the senders' profiles at the result go with them.
type SearchContext struct {
	Before, After  int
	IncludeProfile bool
}

// Bounds of a search.
const (
	MaxSearchLimit   = 100 // results per page
	MaxSearchContext = 50  // events before or after each result
	// searchBatches is how many batches of matches one page reads at most to fill itself
	// with events the searcher may see (as Synapse's five).
	searchBatches = 5
	// maxSearchOffset bounds how deep rank-ordered pages go.
	maxSearchOffset = 5000
)

// searchCursor is where a page of results continues: a row offset for rank order, a
// stream position for recent order, and the one room a group's token is for.
type searchCursor struct {
	byRank bool
	offset int
	before stream.Pos
	roomID string
}

func (c searchCursor) token() string {
	kind, at := "recent", strconv.FormatInt(int64(c.before), 10)
	if c.byRank {
		kind, at = "rank", strconv.Itoa(c.offset)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "\n" + at + "\n" + c.roomID))
}

func parseSearchCursor(tok string, byRank bool) (searchCursor, error) {
	bad := mxerr.InvalidParam("Invalid next_batch token")
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return searchCursor{}, bad
	}
	parts := strings.Split(string(raw), "\n")
	if len(parts) != 3 || (parts[0] == "rank") != byRank || (parts[0] != "rank" && parts[0] != "recent") {
		return searchCursor{}, bad
	}
	n, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || n < 0 {
		return searchCursor{}, bad
	}
	c := searchCursor{byRank: byRank, roomID: parts[2]}
	if byRank {
		if n > maxSearchOffset {
			return searchCursor{}, bad
		}
		c.offset = int(n)
	} else {
		c.before = stream.Pos(n)
	}
	return c, nil
}

// searchRoom is what a search needs of each room a result is in.
type searchRoom struct {
	a *roomAccess
	v *viewer
}

type searchResult struct {
	hit  storage.SearchHit
	enc  *clientevent.Encoded
	m    string
	room *searchRoom
}

// Search runs a full-text search over the rooms the caller is joined to (as Synapse),
// showing only the events the caller may see by the rooms' history visibility (and none
// from users the caller ignores).
func (sy *Syncer) Search(ctx context.Context, sess *auth.Session, req SearchRequest) ([]byte, error) {
	cur := searchCursor{byRank: req.ByRank}
	if req.NextBatch != "" {
		var err error
		if cur, err = parseSearchCursor(req.NextBatch, req.ByRank); err != nil {
			return nil, err
		}
	}
	q := storage.SearchQuery{Words: userdir.QueryWords(req.Term), Member: sess.UserID, ByRank: req.ByRank}
	for _, k := range req.Keys {
		if t, ok := storage.SearchKeys[k]; ok && !slices.Contains(q.Types, t) {
			q.Types = append(q.Types, t)
		}
	}
	if req.Filter != nil && req.Filter.Rooms != nil && len(req.Filter.Rooms) <= storage.MaxSearchRooms {
		q.RoomIDs = req.Filter.Rooms
	}
	if cur.roomID != "" {
		if q.RoomIDs != nil && !slices.Contains(q.RoomIDs, cur.roomID) {
			q.RoomIDs = []string{}
		} else {
			q.RoomIDs = []string{cur.roomID}
		}
	}
	count, err := sy.store.CountSearch(ctx, q)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	rooms := map[string]*searchRoom{}
	roomOf := func(roomID string) (*searchRoom, error) {
		if r, ok := rooms[roomID]; ok {
			return r, nil
		}
		a, err := sy.access(ctx, sess, roomID)
		if e, ok := mxerr.As(err); ok && e.Status == 403 {
			rooms[roomID] = nil
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		v, err := sy.filteringViewer(ctx, sess, a.room, a.peeking)
		if err != nil {
			return nil, err
		}
		r := &searchRoom{a: a, v: v}
		rooms[roomID] = r
		return r, nil
	}

	var results []searchResult
	batch := max(2*req.Limit, 20)
	more := false
	for i := 0; i < searchBatches && len(results) < req.Limit; i++ {
		q.Limit, q.Offset, q.Before = batch, cur.offset, cur.before
		hits, err := sy.store.SearchEvents(ctx, q)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		more = len(hits) == batch
		for j := range hits {
			h := hits[j]
			if len(results) == req.Limit {
				more = true
				break
			}
			cur.offset++
			cur.before = h.Pos
			if !allowed(req.Filter, &h.Event) {
				continue
			}
			room, err := roomOf(h.RoomID)
			if err != nil {
				return nil, err
			}
			if room == nil || h.Pos > room.a.upTo {
				continue
			}
			enc := clientevent.Encode(&h.Event)
			if ok, m := room.v.sees(enc); ok {
				results = append(results, searchResult{hit: h, enc: enc, m: m, room: room})
			}
		}
		if !more || cur.offset >= maxSearchOffset {
			break
		}
	}
	if cur.offset >= maxSearchOffset {
		more = false
	}
	return sy.renderSearch(ctx, req, q.Words, count, results, cur, more)
}

func (sy *Syncer) renderSearch(ctx context.Context, req SearchRequest, words []string, count int, results []searchResult, cur searchCursor, more bool) ([]byte, error) {
	// Bundled aggregations, per room, over the results and their context.
	contexts := make([]*resultContext, len(results))
	byRoom := map[*searchRoom][]*clientevent.Encoded{}
	for i, r := range results {
		byRoom[r.room] = append(byRoom[r.room], r.enc)
		if req.Context == nil {
			continue
		}
		c, err := sy.searchContext(ctx, r, *req.Context)
		if err != nil {
			return nil, err
		}
		contexts[i] = c
		byRoom[r.room] = append(append(byRoom[r.room], c.before.events()...), c.after.events()...)
	}
	ags := map[*searchRoom]*aggregates{}
	for room, evs := range byRoom {
		ag, err := sy.aggregate(ctx, room.v, room.a.room, room.a.upTo, evs)
		if err != nil {
			return nil, err
		}
		ags[room] = ag
	}

	b := []byte(`{"search_categories":{"room_events":{"count":`)
	b = strconv.AppendInt(b, int64(count), 10)
	b = append(b, `,"highlights":`...)
	hl, _ := json.Marshal(append([]string{}, words...))
	b = append(b, hl...)
	b = append(b, `,"results":[`...)
	for i, r := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"rank":`...)
		b = strconv.AppendFloat(b, r.hit.Rank, 'g', -1, 64)
		b = append(b, `,"result":`...)
		b = ags[r.room].appendEvent(b, r.room.v, r.enc, r.m)
		if c := contexts[i]; c != nil {
			b = append(b, `,"context":{"events_before":`...)
			b = c.before.appendList(b, r.room.v, ags[r.room])
			b = append(b, `,"events_after":`...)
			b = c.after.appendList(b, r.room.v, ags[r.room])
			b = append(b, `,"start":"`...)
			b = c.start.AppendToken(b)
			b = append(b, `","end":"`...)
			b = c.end.AppendToken(b)
			b = append(b, '"')
			if req.Context.IncludeProfile {
				b = append(b, `,"profile_info":`...)
				b = appendProfiles(b, c.profiles)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if req.IncludeState && len(results) > 0 {
		b = append(b, `,"state":{`...)
		done := map[string]bool{}
		for _, r := range results {
			if done[r.hit.RoomID] {
				continue
			}
			state, err := sy.store.CurrentState(ctx, r.hit.RoomID)
			if err != nil {
				return nil, mxerr.Internal(err)
			}
			if len(done) > 0 {
				b = append(b, ',')
			}
			done[r.hit.RoomID] = true
			b, _ = jsontext.AppendQuote(b, r.hit.RoomID)
			b = append(b, ':')
			b = sy.appendEvents(b, r.room.v, state)
		}
		b = append(b, '}')
	}
	if (req.GroupByRoom || req.GroupBySender) && len(results) > 0 {
		b = append(b, `,"groups":{`...)
		if req.GroupByRoom {
			b = appendGroups(b, "room_id", results, func(r searchResult) string { return r.hit.RoomID }, func(roomID string) string {
				if !more {
					return ""
				}
				c := cur
				c.roomID = roomID
				return c.token()
			})
		}
		if req.GroupBySender {
			if req.GroupByRoom {
				b = append(b, ',')
			}
			b = appendGroups(b, "sender", results, func(r searchResult) string { return r.hit.Sender }, func(string) string { return "" })
		}
		b = append(b, '}')
	}
	if more {
		b = append(b, `,"next_batch":`...)
		b, _ = jsontext.AppendQuote(b, cur.token())
	}
	return append(b, `}}}`...), nil
}

// appendGroups writes one grouping: each key's result event IDs, ordered by the first
// result's place, and the token that goes on within the group.
func appendGroups(b []byte, name string, results []searchResult, key func(searchResult) string, next func(string) string) []byte {
	b, _ = jsontext.AppendQuote(b, name)
	b = append(b, `:{`...)
	var order []string
	ids := map[string][]string{}
	for _, r := range results {
		k := key(r)
		if _, ok := ids[k]; !ok {
			order = append(order, k)
		}
		ids[k] = append(ids[k], r.hit.ID)
	}
	for i, k := range order {
		if i > 0 {
			b = append(b, ',')
		}
		b, _ = jsontext.AppendQuote(b, k)
		group := map[string]any{"results": ids[k], "order": i}
		if tok := next(k); tok != "" {
			group["next_batch"] = tok
		}
		g, _ := json.Marshal(group)
		b = append(b, ':')
		b = append(b, g...)
	}
	return append(b, '}')
}

// resultContext is a result's event_context.
type resultContext struct {
	before, after shownEvents
	start, end    stream.Pos
	profiles      []storage.Event
}

// searchContext reads the events the caller may see around a result, and the profiles of
// their senders as the room's member state had them after the last one.
func (sy *Syncer) searchContext(ctx context.Context, r searchResult, want SearchContext) (*resultContext, error) {
	out := &resultContext{}
	senders := map[string]bool{r.hit.Sender: true}
	collect := func(forward bool, n int) (shownEvents, stream.Pos, error) {
		cursor, bound := r.hit.Pos-1, stream.Pos(0)
		if forward {
			cursor, bound = r.hit.Pos, r.room.a.upTo
		}
		if n == 0 {
			return nil, cursor, nil
		}
		var evs shownEvents
		cursor, _, err := sy.scanStored(ctx, r.hit.RoomID, cursor, bound, forward, 50, scanCap, func(x *storage.Event) bool {
			xe := clientevent.Encode(x)
			if ok, m := r.room.v.sees(xe); ok {
				senders[x.Sender] = true
				evs = append(evs, shownEvent{xe, m})
			}
			return len(evs) < n
		})
		return evs, cursor, err
	}
	var err error
	if out.before, out.start, err = collect(false, want.Before); err != nil {
		return nil, err
	}
	if out.after, out.end, err = collect(true, want.After); err != nil {
		return nil, err
	}
	if want.IncludeProfile {
		keys := make([]storage.StateKeyOf, 0, len(senders))
		for s := range senders {
			keys = append(keys, storage.StateKeyOf{Type: "m.room.member", StateKey: s})
		}
		last := r.hit.Pos
		if len(out.after) > 0 {
			last = out.after[len(out.after)-1].ev.Pos
		}
		if out.profiles, err = sy.store.StateAt(ctx, r.hit.RoomID, last, keys...); err != nil {
			return nil, mxerr.Internal(err)
		}
	}
	return out, nil
}

// appendProfiles writes profile_info: each member event's displayname and avatar_url.
func appendProfiles(b []byte, members []storage.Event) []byte {
	b = append(b, '{')
	n := 0
	for i := range members {
		e := &members[i]
		if e.StateKey == nil {
			continue
		}
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		json.Unmarshal(clientevent.Content(e), &c)
		p := map[string]string{}
		if c.DisplayName != nil {
			p["displayname"] = *c.DisplayName
		}
		if c.AvatarURL != nil {
			p["avatar_url"] = *c.AvatarURL
		}
		if n++; n > 1 {
			b = append(b, ',')
		}
		b, _ = jsontext.AppendQuote(b, *e.StateKey)
		raw, _ := json.Marshal(p)
		b = append(b, ':')
		b = append(b, raw...)
	}
	return append(b, '}')
}
