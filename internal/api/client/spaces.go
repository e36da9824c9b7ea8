package client

import (
	"net/http"
	"strconv"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/rooms"
)

func (a *API) hierarchy(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	req := rooms.HierarchyRequest{RoomID: r.PathValue("roomId"), MaxDepth: -1, Limit: rooms.MaxHierarchyPage}
	var err error
	if req.SuggestedOnly, err = boolParam(r, "suggested_only"); err != nil {
		return err
	}
	if raw, ok := query(r, "max_depth"); ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return mxerr.InvalidParam("Query parameter max_depth must be a non-negative integer")
		}
		req.MaxDepth = n
	}
	if raw, ok := query(r, "limit"); ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			return mxerr.InvalidParam("Query parameter limit must be a positive integer")
		}
		req.Limit = min(n, rooms.MaxHierarchyPage)
	}
	req.From, _ = query(r, "from")
	resp, err := a.rooms.Hierarchy(r.Context(), s, req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}

// roomSummary answers with or without a token (s is nil without one).
func (a *API) roomSummary(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	sum, err := a.rooms.Summary(r.Context(), s, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, sum)
}

func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	raw, ok := query(r, "ts")
	if !ok {
		return mxerr.MissingParam("Missing required integer query parameter ts")
	}
	ts, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ts < 0 {
		return mxerr.InvalidParam("Query parameter ts must be a non-negative integer")
	}
	forward := true
	switch dir, _ := query(r, "dir"); dir {
	case "", "f":
	case "b":
		forward = false
	default:
		return mxerr.InvalidParam("Query parameter dir must be f or b")
	}
	id, originTS, err := a.sync.TimestampToEvent(r.Context(), s, r.PathValue("roomId"), ts, forward)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"event_id": id, "origin_server_ts": originTS})
}

func (a *API) searchUserDirectory(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int64  `json:"limit"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.SearchTerm == nil {
		return mxerr.MissingParam("search_term is a required field")
	}
	limit := 10
	if body.Limit != nil {
		limit = int(max(min(*body.Limit, rooms.MaxDirectoryResults), 0))
	}
	results, limited, err := a.rooms.SearchUsers(r.Context(), s, *body.SearchTerm, limit)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"results": results, "limited": limited})
}
