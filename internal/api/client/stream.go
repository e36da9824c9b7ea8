package client

import (
	"net/http"
	"strconv"
	"time"

	"porthole/internal/auth"
	"porthole/internal/filter"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/rooms"
	"porthole/internal/syncer"
)

// maxStreamLimit caps the limit parameter of /events (as Synapse does).
const maxStreamLimit = 1000

// events serves GET /events: with room_id the peek stream; without, the deprecated stream
// of all joined rooms (not for guests). Checks run in Synapse's order: guest without room,
// from/to, limit, timeout, then access.
func (a *API) events(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID, _ := query(r, "room_id")
	if roomID == "" && s.IsGuest {
		return mxerr.Unknown("Guest users must specify room_id param")
	}
	from, err := tokenParam(r, "from")
	if err != nil {
		return err
	}
	if _, err := tokenParam(r, "to"); err != nil {
		return err
	}
	if dir, ok := query(r, "dir"); ok && dir != "f" && dir != "b" {
		return mxerr.Unknown("Unknown dir")
	}
	limit, err := intParam(r, "limit", 10, maxStreamLimit)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 10
	}
	timeout, err := timeoutParam(r, a.cfg.DefaultTimeout)
	if err != nil {
		return err
	}
	if timeout < 0 {
		// As in Synapse, a negative timeout is a short wait (the floor), not none.
		timeout = time.Nanosecond
	}
	timeout = a.sync.ClampTimeout(timeout)
	if !s.IsGuest {
		// Streaming events counts as being online, as /sync does (and Synapse's /events).
		if err := a.eph.SetPresence(r.Context(), s.UserID, "online", nil, true); err != nil {
			return err
		}
	}
	release, err := a.longPoll(r, s, timeout)
	if err != nil {
		return err
	}
	defer release()
	body, err := a.sync.Events(r.Context(), s, syncer.EventsRequest{RoomID: roomID, From: from, Timeout: timeout, Limit: limit})
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) roomInitialSync(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	limit, err := intParam(r, "limit", 10, 1000)
	if err != nil {
		return err
	}
	roomID := r.PathValue("roomId")
	if !rooms.ValidRoomID(roomID) {
		return mxerr.Forbidden("Unknown room " + roomID)
	}
	body, err := a.sync.RoomInitialSync(r.Context(), s, roomID, limit)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) initialSync(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	limit, err := intParam(r, "limit", 10, 1000)
	if err != nil {
		return err
	}
	archived, err := boolParam(r, "archived")
	if err != nil {
		return err
	}
	body, err := a.sync.GlobalInitialSync(r.Context(), s, limit, archived)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) syncHandler(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	since, err := tokenParam(r, "since")
	if err != nil {
		if e, ok := mxerr.As(err); ok {
			e.Message = "Invalid since token"
		}
		return err
	}
	timeout, err := syncTimeoutParam(r)
	if err != nil {
		return err
	}
	fullState, err := boolParam(r, "full_state")
	if err != nil {
		return err
	}
	f, err := a.syncFilter(r, s)
	if err != nil {
		return err
	}
	presence, _ := query(r, "set_presence")
	switch presence {
	case "", "online", "offline", "unavailable":
	default:
		return mxerr.InvalidParam("Unknown set_presence value")
	}
	if !s.IsGuest && presence != "offline" {
		state := presence
		if state == "" {
			state = "online"
		}
		if err := a.eph.SetPresence(r.Context(), s.UserID, state, nil, true); err != nil {
			return err
		}
	}
	timeout = a.sync.ClampTimeout(timeout)
	release, err := a.longPoll(r, s, timeout)
	if err != nil {
		return err
	}
	defer release()
	body, err := a.sync.Sync(r.Context(), s, syncer.SyncRequest{Since: since, ToDeviceAck: toDeviceAck(r), Timeout: timeout, FullState: fullState, Filter: f})
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

// syncFilter reads the filter parameter: inline JSON, or the ID of a stored filter.
func (a *API) syncFilter(r *http.Request, s *auth.Session) (*filter.Filter, error) {
	raw, ok := query(r, "filter")
	if !ok || raw == "" {
		return nil, nil
	}
	if raw[0] == '{' {
		if f := a.filters.get(raw); f != nil {
			return f, nil
		}
		f, err := filter.Parse([]byte(raw))
		if err != nil {
			return nil, filterError(err)
		}
		a.filters.put(raw, f, len(raw))
		return f, nil
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 0 {
		return nil, mxerr.InvalidParam("filter must be a filter ID or a JSON filter")
	}
	// Stored filters never change, so (user, ID) names one filter for good.
	key := s.UserID + "\x00" + raw
	if f := a.filters.get(key); f != nil {
		return f, nil
	}
	stored, err := a.sync.StoredFilter(r.Context(), s.UserID, id)
	if e, ok := mxerr.As(err); ok && e.Status == 404 {
		return nil, mxerr.InvalidParam("Unknown filter ID")
	} else if err != nil {
		return nil, err
	}
	f, err := filter.Parse(stored)
	if err != nil {
		return nil, filterError(err)
	}
	a.filters.put(key, f, len(stored))
	return f, nil
}

func (a *API) postFilter(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if r.PathValue("userId") != s.UserID {
		return mxerr.Forbidden("Cannot create filters for other users")
	}
	raw, err := httpx.ReadBody(r, a.cfg.MaxBody)
	if err != nil {
		return err
	}
	f, err := filter.Parse(raw)
	if err != nil {
		return filterError(err)
	}
	id, err := a.sync.SaveFilter(r.Context(), s.UserID, f.JSON())
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"filter_id": strconv.FormatInt(id, 10)})
}

func (a *API) getFilter(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if r.PathValue("userId") != s.UserID {
		return mxerr.Forbidden("Cannot read filters of other users")
	}
	id, err := strconv.ParseInt(r.PathValue("filterId"), 10, 64)
	if err != nil {
		return mxerr.NotFound("No such filter")
	}
	stored, err := a.sync.StoredFilter(r.Context(), s.UserID, id)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, stored)
	return nil
}
