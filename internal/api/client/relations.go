package client

import (
	"net/http"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/stream"
	"porthole/internal/syncer"
)

// relations serves GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]:
// newest first by default (dir=b), 5 per page unless limit says (at most 1000, as Synapse).
func (a *API) relations(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	from, err := tokenParam(r, "from")
	if err != nil {
		return err
	}
	to, err := tokenParam(r, "to")
	if err != nil {
		return err
	}
	dir, _ := query(r, "dir")
	if dir != "" && dir != "b" && dir != "f" {
		return mxerr.InvalidParam("dir must be b or f")
	}
	limit, err := intParam(r, "limit", 5, 1000)
	if err != nil {
		return err
	}
	req := syncer.RelationsRequest{RoomID: r.PathValue("roomId"), EventID: r.PathValue("eventId"),
		RelType: r.PathValue("relType"), EventType: r.PathValue("eventType"),
		From: from, To: to, Forward: dir == "f", Limit: max(limit, 1)}
	// The stable name, and MSC3981's, which clients still send.
	for _, name := range []string{"recurse", "org.matrix.msc3981.recurse"} {
		if _, given := query(r, name); given {
			recurse, err := boolParam(r, name)
			if err != nil {
				return err
			}
			if req.Recurse == nil || recurse {
				req.Recurse = &recurse
			}
		}
	}
	body, err := a.sync.Relations(r.Context(), s, req)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

// threads serves GET /v1/rooms/{roomId}/threads: 5 thread roots per page unless limit
// says (1 to 100).
func (a *API) threads(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	include, _ := query(r, "include")
	if include != "" && include != "all" && include != "participated" {
		return mxerr.InvalidParam("include must be all or participated")
	}
	limit, err := intParam(r, "limit", 5, 100)
	if err != nil {
		return err
	}
	if limit == 0 {
		return mxerr.InvalidParam("limit must be greater than zero")
	}
	var from *stream.Pos
	if raw, ok := query(r, "from"); ok && raw != "" {
		p, err := stream.ParseToken(raw)
		if err != nil {
			return mxerr.InvalidParam("Unknown pagination token")
		}
		from = &p
	}
	body, err := a.sync.Threads(r.Context(), s, syncer.ThreadsRequest{RoomID: r.PathValue("roomId"), Participated: include == "participated", From: from, Limit: limit})
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}
