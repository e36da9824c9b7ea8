package client

import (
	"encoding/json/jsontext"
	"errors"
	"net/http"
	"slices"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/filter"
	"porthole/internal/httpx"
	"porthole/internal/mxerr"
	"porthole/internal/rooms"
	"porthole/internal/syncer"
)

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req rooms.CreateRoomRequest
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	roomID, err := a.rooms.CreateRoom(r.Context(), s, req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"room_id": roomID})
}

// upgradeRoom serves POST /rooms/{roomId}/upgrade.
func (a *API) upgradeRoom(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var req struct {
		NewVersion         *string  `json:"new_version"`
		AdditionalCreators []string `json:"additional_creators"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	if req.NewVersion == nil {
		return mxerr.MissingParam("Missing new_version")
	}
	newRoom, err := a.rooms.UpgradeRoom(r.Context(), s, r.PathValue("roomId"), *req.NewVersion, req.AdditionalCreators)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"replacement_room": newRoom})
}

type reasonBody struct {
	Reason   string `json:"reason"`
	UserID   string `json:"user_id"`
	IsDirect bool   `json:"is_direct"`
}

// optionalJSON decodes a body that may be empty.
func (a *API) optionalJSON(r *http.Request, v any) error {
	raw, err := httpx.ReadBody(r, a.cfg.MaxBody)
	if err != nil || len(strings.TrimSpace(string(raw))) == 0 {
		return err
	}
	return httpx.DecodeObject(raw, v)
}

func (a *API) join(w http.ResponseWriter, r *http.Request, s *auth.Session, target string) error {
	var body map[string]jsontext.Value
	if err := a.optionalJSON(r, &body); err != nil {
		return err
	}
	// third_party_signed is not supported (there is no identity server); anything else the
	// client sends goes into its member event, as in Synapse.
	delete(body, "third_party_signed")
	roomID, err := a.rooms.Join(r.Context(), s, target, body)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"room_id": roomID})
}

func (a *API) joinByIDOrAlias(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	return a.join(w, r, s, r.PathValue("roomIdOrAlias"))
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	roomID := r.PathValue("roomId")
	if !rooms.ValidRoomID(roomID) {
		return mxerr.InvalidParam("Invalid room ID")
	}
	return a.join(w, r, s, roomID)
}

func (a *API) membership(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
		var body reasonBody
		if action == "leave" {
			if err := a.optionalJSON(r, &body); err != nil {
				return err
			}
		} else {
			if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
				return err
			}
			if body.UserID == "" {
				return mxerr.MissingParam("Missing user_id")
			}
		}
		err := a.rooms.ChangeMembership(r.Context(), s, r.PathValue("roomId"), rooms.MembershipChange{
			Action: action, Target: body.UserID, Reason: body.Reason, IsDirect: body.IsDirect})
		if err != nil {
			return err
		}
		return httpx.WriteJSON(w, 200, struct{}{})
	}
}

func (a *API) forget(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if err := a.optionalJSON(r, &struct{}{}); err != nil {
		return err
	}
	if err := a.rooms.Forget(r.Context(), s, r.PathValue("roomId")); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	ids, err := a.sync.JoinedRooms(r.Context(), s)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"joined_rooms": ids})
}

func (a *API) send(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	content, err := a.rawObject(r)
	if err != nil {
		return err
	}
	txnID := r.PathValue("txnId")
	if txnID == "" {
		txnID = "post-" + auth.RandomID(12)
	}
	id, err := a.rooms.Send(r.Context(), s, r.PathValue("roomId"), r.PathValue("eventType"), txnID, content)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"event_id": id})
}

func (a *API) putState(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	content, err := a.rawObject(r)
	if err != nil {
		return err
	}
	id, err := a.rooms.SetState(r.Context(), s, r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("stateKey"), content)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"event_id": id})
}

func (a *API) getState(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	body, err := a.sync.State(r.Context(), s, r.PathValue("roomId"))
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) getStateEvent(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	format, _ := query(r, "format")
	body, err := a.sync.StateEvent(r.Context(), s, r.PathValue("roomId"), r.PathValue("eventType"), r.PathValue("stateKey"), format == "event")
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) redact(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := a.optionalJSON(r, &body); err != nil {
		return err
	}
	id, err := a.rooms.Redact(r.Context(), s, r.PathValue("roomId"), r.PathValue("eventId"), r.PathValue("txnId"), body.Reason)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]string{"event_id": id})
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	body, err := a.sync.Event(r.Context(), s, r.PathValue("roomId"), r.PathValue("eventId"))
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) members(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	at, err := tokenParam(r, "at")
	if err != nil {
		return err
	}
	req := syncer.MembersRequest{RoomID: r.PathValue("roomId"), At: at}
	req.Membership, _ = query(r, "membership")
	req.NotMembership, _ = query(r, "not_membership")
	valid := []string{"", "join", "invite", "leave", "ban", "knock"}
	if !slices.Contains(valid, req.Membership) || !slices.Contains(valid, req.NotMembership) {
		return mxerr.InvalidParam("Unknown membership")
	}
	body, err := a.sync.Members(r.Context(), s, req)
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	joined, err := a.sync.JoinedMembers(r.Context(), s, r.PathValue("roomId"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"joined": joined})
}

// roomEventFilter parses the filter query parameter of /messages and /context.
func roomEventFilter(r *http.Request) (*filter.RoomEventFilter, error) {
	raw, ok := query(r, "filter")
	if !ok || raw == "" {
		return nil, nil
	}
	f, err := filter.ParseRoomEventFilter([]byte(raw))
	if err != nil {
		return nil, filterError(err)
	}
	return f, nil
}

// filterError maps filter parse errors to Matrix errors.
func filterError(err error) error {
	var fe *filter.Error
	if errors.As(err, &fe) {
		return &mxerr.Error{Status: 400, Code: fe.Code, Message: fe.Message}
	}
	return mxerr.BadJSON("Invalid filter")
}

func (a *API) messages(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
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
	limit, err := intParam(r, "limit", 10, 1000)
	if err != nil {
		return err
	}
	f, err := roomEventFilter(r)
	if err != nil {
		return err
	}
	if f != nil && f.Limit > 0 {
		limit = min(limit, f.Limit)
	}
	body, err := a.sync.Messages(r.Context(), s, syncer.MessagesRequest{
		RoomID: r.PathValue("roomId"), From: from, To: to, Backward: dir == "b", Limit: max(limit, 1), Filter: f})
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) context(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	limit, err := intParam(r, "limit", 10, 100)
	if err != nil {
		return err
	}
	f, err := roomEventFilter(r)
	if err != nil {
		return err
	}
	body, err := a.sync.Context(r.Context(), s, syncer.ContextRequest{RoomID: r.PathValue("roomId"), EventID: r.PathValue("eventId"), Limit: limit, Filter: f})
	if err != nil {
		return err
	}
	httpx.WriteBytes(w, 200, body)
	return nil
}

func (a *API) putAlias(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		RoomID string `json:"room_id"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if err := a.rooms.PutAlias(r.Context(), s, r.PathValue("roomAlias"), body.RoomID); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	alias := r.PathValue("roomAlias")
	if !rooms.ValidAlias(alias) {
		return mxerr.InvalidParam("Invalid room alias")
	}
	roomID, err := a.rooms.ResolveRoom(r.Context(), alias)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"room_id": roomID, "servers": []string{a.cfg.ServerName}})
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if err := a.rooms.DeleteAlias(r.Context(), s, r.PathValue("roomAlias")); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	aliases, err := a.sync.RoomAliases(r.Context(), s, r.PathValue("roomId"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"aliases": aliases})
}

func (a *API) getDirectoryVisibility(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	published, err := a.rooms.Published(r.Context(), r.PathValue("roomId"))
	if err != nil {
		return err
	}
	v := "private"
	if published {
		v = "public"
	}
	return httpx.WriteJSON(w, 200, map[string]string{"visibility": v})
}

func (a *API) setDirectoryVisibility(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	var body struct {
		Visibility string `json:"visibility"`
	}
	if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.Visibility != "public" && body.Visibility != "private" {
		return mxerr.InvalidParam("visibility must be public or private")
	}
	if err := a.rooms.SetPublished(r.Context(), s, r.PathValue("roomId"), body.Visibility == "public"); err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, struct{}{})
}

// content of the optional POST /publicRooms body.
type publicRoomsBody struct {
	Limit  *int   `json:"limit"`
	Since  string `json:"since"`
	Server string `json:"server"`
	Filter *struct {
		GenericSearchTerm string `json:"generic_search_term"`
		// RoomTypes: a null entry stands for rooms without a type.
		RoomTypes []*string `json:"room_types"`
	} `json:"filter"`
	IncludeAllNetworks   bool   `json:"include_all_networks"`
	ThirdPartyInstanceID string `json:"third_party_instance_id"`
}

func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	var body publicRoomsBody
	if r.Method == http.MethodPost {
		if err := httpx.ReadJSON(r, a.cfg.MaxBody, &body); err != nil {
			return err
		}
	} else {
		limit, err := intParam(r, "limit", 0, 1000)
		if err != nil {
			return err
		}
		if limit > 0 {
			body.Limit = &limit
		}
		body.Since, _ = query(r, "since")
		body.Server, _ = query(r, "server")
		body.ThirdPartyInstanceID, _ = query(r, "third_party_instance_id")
		if all, _ := query(r, "include_all_networks"); all == "true" {
			body.IncludeAllNetworks = true
		}
	}
	if body.Server != "" && body.Server != a.cfg.ServerName {
		return mxerr.Forbidden("This server does not federate: cannot list rooms of " + body.Server)
	}
	req := rooms.PublicRoomsRequest{Since: body.Since, ThirdPartyInstanceID: body.ThirdPartyInstanceID, AllNetworks: body.IncludeAllNetworks}
	if body.Limit != nil {
		if *body.Limit < 0 {
			return mxerr.InvalidParam("limit must not be negative")
		}
		req.Limit = *body.Limit
	}
	if body.Filter != nil {
		req.Search = body.Filter.GenericSearchTerm
		if body.Filter.RoomTypes != nil {
			req.RoomTypes = make([]string, len(body.Filter.RoomTypes))
			for i, t := range body.Filter.RoomTypes {
				if t != nil {
					req.RoomTypes[i] = *t
				}
			}
		}
	}
	resp, err := a.rooms.PublicRooms(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, resp)
}
