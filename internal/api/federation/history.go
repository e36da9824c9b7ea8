package federation

import (
	"net/http"
	"strconv"

	"porthole/internal/httpx"
	"porthole/internal/mxerr"
)

// state is GET /state/{roomId}?event_id=: the state before the event and its auth chain.
func (a *API) state(w http.ResponseWriter, r *http.Request, req *Request) error {
	eventID := r.URL.Query().Get("event_id")
	if eventID == "" {
		return mxerr.MissingParam("event_id is required")
	}
	state, chain, err := a.inbound.State(r.Context(), req.Origin, r.PathValue("roomId"), eventID)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"pdus": state, "auth_chain": chain})
}

// missingEvents is POST /get_missing_events/{roomId}.
func (a *API) missingEvents(w http.ResponseWriter, r *http.Request, req *Request) error {
	var body struct {
		Limit          *int     `json:"limit"`
		MinDepth       int64    `json:"min_depth"`
		EarliestEvents []string `json:"earliest_events"`
		LatestEvents   []string `json:"latest_events"`
	}
	if err := httpx.DecodeObject(req.Body, &body); err != nil {
		return err
	}
	if body.EarliestEvents == nil || body.LatestEvents == nil {
		return mxerr.BadJSON("earliest_events and latest_events are required")
	}
	limit := 0
	if body.Limit != nil {
		if *body.Limit <= 0 {
			return mxerr.InvalidParam("limit must be a positive integer")
		}
		limit = *body.Limit
	}
	evs, err := a.inbound.MissingEvents(r.Context(), req.Origin, r.PathValue("roomId"), body.EarliestEvents, body.LatestEvents, limit, body.MinDepth)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"events": evs})
}

// backfill is GET /backfill/{roomId}?v=&limit=.
func (a *API) backfill(w http.ResponseWriter, r *http.Request, req *Request) error {
	q := r.URL.Query()
	from := q["v"]
	if len(from) == 0 {
		return mxerr.MissingParam("v is required")
	}
	if q.Get("limit") == "" {
		return mxerr.MissingParam("limit is required")
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil {
		return mxerr.InvalidParam("limit must be an integer")
	}
	evs, err := a.inbound.Backfill(r.Context(), req.Origin, r.PathValue("roomId"), from, limit)
	if err != nil {
		return err
	}
	return a.pdus(w, evs)
}
