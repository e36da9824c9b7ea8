package client

import (
	"encoding/json/jsontext"
	"net/http"

	"porthole/internal/auth"
	"porthole/internal/filter"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/syncer"
)

func (a *API) search(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		SearchCategories *struct {
			RoomEvents *struct {
				SearchTerm   *string        `json:"search_term"`
				Keys         []string       `json:"keys"`
				Filter       jsontext.Value `json:"filter"`
				OrderBy      string         `json:"order_by"`
				EventContext *struct {
					BeforeLimit    *int64 `json:"before_limit"`
					AfterLimit     *int64 `json:"after_limit"`
					IncludeProfile bool   `json:"include_profile"`
				} `json:"event_context"`
				IncludeState bool `json:"include_state"`
				Groupings    *struct {
					GroupBy []struct {
						Key string `json:"key"`
					} `json:"group_by"`
				} `json:"groupings"`
			} `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.SearchCategories == nil {
		return mxerr.MissingParam("Missing search_categories")
	}
	re := body.SearchCategories.RoomEvents
	if re == nil {
		// room_events is the only category there is.
		return httpx.WriteJSON(w, 200, map[string]any{"search_categories": struct{}{}})
	}
	if re.SearchTerm == nil {
		return mxerr.MissingParam("Missing search_term")
	}
	req := syncer.SearchRequest{Term: *re.SearchTerm, Keys: re.Keys, Limit: 10, IncludeState: re.IncludeState}
	if req.Keys == nil {
		req.Keys = []string{"content.body", "content.name", "content.topic"}
	}
	if re.Filter != nil && re.Filter.Kind() != 'n' {
		f, err := filter.ParseRoomEventFilter(re.Filter)
		if err != nil {
			return filterError(err)
		}
		req.Filter = f
		if f.LimitSet() {
			req.Limit = min(f.Limit, syncer.MaxSearchLimit)
		}
	}
	switch re.OrderBy {
	case "", "rank":
		req.ByRank = true
	case "recent":
	default:
		return mxerr.InvalidParam("order_by must be rank or recent")
	}
	if ec := re.EventContext; ec != nil {
		c := &syncer.SearchContext{Before: 5, After: 5, IncludeProfile: ec.IncludeProfile}
		for _, l := range []struct {
			v   *int64
			dst *int
		}{{ec.BeforeLimit, &c.Before}, {ec.AfterLimit, &c.After}} {
			if l.v == nil {
				continue
			}
			if *l.v < 0 {
				return mxerr.InvalidParam("event_context limits must not be negative")
			}
			*l.dst = int(min(*l.v, syncer.MaxSearchContext))
		}
		req.Context = c
	}
	if re.Groupings != nil {
		for _, g := range re.Groupings.GroupBy {
			switch g.Key {
			case "room_id":
				req.GroupByRoom = true
			case "sender":
				req.GroupBySender = true
			default:
				return mxerr.InvalidParam("Groups are by room_id or sender, not " + g.Key)
			}
		}
	}
	req.NextBatch, _ = query(r, "next_batch")
	out, err := a.sync.Search(r.Context(), s, req)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, out)
	return nil
}
