package rooms

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// ValidAlias checks the grammar of a room alias ("#localpart:server").
func ValidAlias(alias string) bool {
	if len(alias) < 4 || len(alias) > 255 || alias[0] != '#' {
		return false
	}
	local, server, ok := strings.Cut(alias[1:], ":")
	return ok && local != "" && server != "" && !strings.ContainsAny(alias, " \t\n\x00/")
}

// PutAlias maps a local alias to a room. The creator must be in the room.
func (s *Service) PutAlias(ctx context.Context, sess *auth.Session, alias, roomID string) error {
	if !ValidAlias(alias) {
		return mxerr.InvalidParam("Invalid room alias")
	}
	if _, server, _ := strings.Cut(alias[1:], ":"); server != s.cfg.ServerName {
		return mxerr.InvalidParam("Room alias must be on this server")
	}
	if !ValidRoomID(roomID) {
		return mxerr.InvalidParam("Invalid room ID")
	}
	if err := s.mayClaimAlias(sess, alias); err != nil {
		return err
	}
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		if _, err := tx.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
			return mxerr.NotFound("Unknown room")
		} else if err != nil {
			return err
		}
		// An application service manages the aliases of its namespaces without joining
		// the rooms (as in Synapse).
		if m, err := tx.Member(ctx, roomID, sess.UserID); sess.AppService == nil && (err != nil || m.Membership != visibility.Join) {
			return mxerr.Forbidden("You must be in the room to give it an alias")
		}
		if err := tx.PutAlias(ctx, storage.Alias{Alias: alias, RoomID: roomID, Creator: sess.UserID}); errors.Is(err, storage.ErrConflict) {
			return &mxerr.Error{Status: 409, Code: "M_UNKNOWN", Message: "Room alias " + alias + " already exists"}
		} else if err != nil {
			return err
		}
		return nil
	})
	return asMatrixError(err)
}

// DeleteAlias removes an alias; its creator or a room member with power over
// m.room.canonical_alias may.
func (s *Service) DeleteAlias(ctx context.Context, sess *auth.Session, alias string) error {
	if !ValidAlias(alias) {
		return mxerr.InvalidParam("Invalid room alias")
	}
	a, err := s.store.AliasRoom(ctx, alias)
	if errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Room alias " + alias + " not found")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	if err := s.mayClaimAlias(sess, alias); err != nil {
		return err
	}
	if a.Creator != sess.UserID && sess.AppService == nil {
		ok, err := s.canSendState(ctx, a.RoomID, sess.UserID, "m.room.canonical_alias")
		if err != nil {
			return asMatrixError(err)
		}
		if !ok {
			return mxerr.Forbidden("You may not delete this alias")
		}
	}
	err = s.store.Write(ctx, func(tx storage.Tx) error { return tx.DeleteAlias(ctx, alias) })
	if errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Room alias " + alias + " not found")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	s.dropCanonicalAlias(ctx, sess, a.RoomID, alias)
	return nil
}

// dropCanonicalAlias removes a deleted alias from the room's m.room.canonical_alias, as
// the deleting user; if they may not, the stale alias stays (as in Synapse).
func (s *Service) dropCanonicalAlias(ctx context.Context, sess *auth.Session, roomID, alias string) {
	state, err := s.store.CurrentState(ctx, roomID, storage.StateKeyOf{Type: "m.room.canonical_alias"})
	if err != nil || len(state) == 0 {
		return
	}
	var c map[string]jsontext.Value
	if json.Unmarshal(clientevent.Content(&state[0]), &c) != nil {
		return
	}
	changed := false
	if stringField(clientevent.Content(&state[0]), "alias") == alias {
		delete(c, "alias")
		changed = true
	}
	var alt []string
	if raw, ok := c["alt_aliases"]; ok && json.Unmarshal(raw, &alt) == nil {
		kept := slices.DeleteFunc(slices.Clone(alt), func(a string) bool { return a == alias })
		if len(kept) != len(alt) {
			c["alt_aliases"] = mustJSON(kept)
			changed = true
		}
	}
	if !changed {
		return
	}
	if _, err := s.SetState(ctx, sess, roomID, "m.room.canonical_alias", "", mustJSON(c)); err != nil {
		s.log.Info("could not update canonical alias after deleting it", "room", roomID, "alias", alias, "err", err)
	}
}

// canSendState checks the user's power level for a state event type in the room.
func (s *Service) canSendState(ctx context.Context, roomID, userID, evType string) (bool, error) {
	room, err := s.store.Room(ctx, roomID)
	if err != nil {
		return false, err
	}
	if m, err := s.store.Member(ctx, roomID, userID); err != nil || m.Membership != visibility.Join {
		return false, nil
	}
	pl, err := powerLevels(ctx, s.store, room)
	if err != nil {
		return false, err
	}
	return pl.GetUserLevel(id.UserID(userID)) >= pl.GetEventLevel(stateType(evType)), nil
}

// Published reports whether a room is listed in the directory (404 for unknown rooms).
func (s *Service) Published(ctx context.Context, roomID string) (bool, error) {
	room, err := s.store.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, mxerr.NotFound("Unknown room")
	} else if err != nil {
		return false, mxerr.Internal(err)
	}
	return room.Published, nil
}

// SetPublished lists or unlists a room in the directory; it takes the power to send
// m.room.canonical_alias.
func (s *Service) SetPublished(ctx context.Context, sess *auth.Session, roomID string, published bool) error {
	if !ValidRoomID(roomID) {
		return mxerr.InvalidParam("Invalid room ID")
	}
	if _, err := s.store.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Unknown room")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	ok, err := s.canSendState(ctx, roomID, sess.UserID, "m.room.canonical_alias")
	if err != nil {
		return asMatrixError(err)
	}
	if !ok {
		return mxerr.Forbidden("You may not change this room's visibility in the directory")
	}
	return asMatrixError(s.store.Write(ctx, func(tx storage.Tx) error { return tx.SetPublished(ctx, roomID, published) }))
}

// SetAppServiceListed lists or unlists a room in the calling application service's
// directory of a third-party network (only services may).
func (s *Service) SetAppServiceListed(ctx context.Context, sess *auth.Session, networkID, roomID string, listed bool) error {
	if sess.AppService == nil {
		return mxerr.Forbidden("Only application services can edit their published room lists")
	}
	if !ValidRoomID(roomID) {
		return mxerr.InvalidParam("Invalid room ID")
	}
	if networkID == "" || len(networkID) > 255 {
		return mxerr.InvalidParam("Invalid network ID")
	}
	if _, err := s.store.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return mxerr.NotFound("Unknown room")
	} else if err != nil {
		return mxerr.Internal(err)
	}
	return asMatrixError(s.store.Write(ctx, func(tx storage.Tx) error {
		return tx.SetAppServiceListed(ctx, sess.AppService.ID, networkID, roomID, listed)
	}))
}

// PublicRoomsRequest is a page request of the room directory.
type PublicRoomsRequest struct {
	Limit  int
	Since  string
	Search string
	// RoomTypes, when not nil, keeps rooms of these types; "" stands for rooms without one.
	RoomTypes []string
	// ThirdPartyInstanceID ("service id|network id") lists an application service's
	// directory of a network instead of the server's; AllNetworks lists every directory.
	ThirdPartyInstanceID string
	AllNetworks          bool
}

// PublicRoom is one directory entry.
type PublicRoom struct {
	RoomID           string  `json:"room_id"`
	Name             *string `json:"name,omitempty"`
	Topic            *string `json:"topic,omitempty"`
	CanonicalAlias   *string `json:"canonical_alias,omitempty"`
	AvatarURL        *string `json:"avatar_url,omitempty"`
	NumJoinedMembers int     `json:"num_joined_members"`
	WorldReadable    bool    `json:"world_readable"`
	GuestCanJoin     bool    `json:"guest_can_join"`
	JoinRule         string  `json:"join_rule,omitempty"`
	RoomType         *string `json:"room_type,omitempty"`
}

// PublicRoomsResponse is a page of the room directory.
type PublicRoomsResponse struct {
	Chunk                  []PublicRoom `json:"chunk"`
	NextBatch              string       `json:"next_batch,omitempty"`
	PrevBatch              string       `json:"prev_batch,omitempty"`
	TotalRoomCountEstimate int          `json:"total_room_count_estimate"`
}

// PublicRooms lists published rooms, most members first, with offset tokens "o<n>". As in
// Synapse, only rooms that anyone could join or read are listed (join rule public, knock
// or knock_restricted, or world-readable history), and only while someone is in them.
// The whole directory is read in one query.
func (s *Service) PublicRooms(ctx context.Context, req PublicRoomsRequest) (*PublicRoomsResponse, error) {
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if err != nil || n < 0 || !strings.HasPrefix(req.Since, "o") {
			return nil, mxerr.InvalidParam("Invalid since token")
		}
		offset = n
	}
	var lists storage.DirectoryLists
	switch {
	case req.AllNetworks && req.ThirdPartyInstanceID != "":
		return nil, mxerr.InvalidParam("Can't use include_all_networks with an explicit network")
	case req.AllNetworks:
		lists.All = true
	case req.ThirdPartyInstanceID != "":
		var ok bool
		lists.AppServiceID, lists.NetworkID, ok = strings.Cut(req.ThirdPartyInstanceID, "|")
		if !ok || lists.AppServiceID == "" {
			return nil, mxerr.InvalidParam("Invalid third_party_instance_id")
		}
	}
	published, err := s.store.PublishedRooms(ctx, lists)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	all := make([]PublicRoom, 0, len(published))
	search := strings.ToLower(req.Search)
	for i := range published {
		pr := publicRoom(&published[i])
		if pr.NumJoinedMembers == 0 || !(pr.WorldReadable || listedJoinRule(pr.JoinRule)) {
			continue
		}
		if search != "" && !matches(search, pr.Name, pr.Topic, pr.CanonicalAlias) {
			continue
		}
		if req.RoomTypes != nil && !slices.Contains(req.RoomTypes, deref(pr.RoomType)) {
			continue
		}
		all = append(all, pr)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].NumJoinedMembers != all[j].NumJoinedMembers {
			return all[i].NumJoinedMembers > all[j].NumJoinedMembers
		}
		return all[i].RoomID < all[j].RoomID
	})
	resp := &PublicRoomsResponse{TotalRoomCountEstimate: len(all), Chunk: []PublicRoom{}}
	if offset > len(all) {
		offset = len(all)
	}
	end := len(all)
	if req.Limit > 0 && offset+req.Limit < end {
		end = offset + req.Limit
		resp.NextBatch = "o" + strconv.Itoa(end)
	}
	if offset > 0 {
		resp.PrevBatch = "o" + strconv.Itoa(max(offset-max(req.Limit, 1), 0))
	}
	resp.Chunk = append(resp.Chunk, all[offset:end]...)
	return resp, nil
}

// listedJoinRule reports whether a room with this join rule may be listed to anyone.
func listedJoinRule(rule string) bool {
	return rule == "public" || rule == "knock" || rule == "knock_restricted"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func matches(term string, fields ...*string) bool {
	for _, f := range fields {
		if f != nil && strings.Contains(strings.ToLower(*f), term) {
			return true
		}
	}
	return false
}

func publicRoom(room *storage.PublishedRoom) PublicRoom {
	pr := PublicRoom{RoomID: room.RoomID, NumJoinedMembers: room.Joined}
	str := func(e *storage.Event, key string) *string {
		v := stringField(clientevent.Content(e), key)
		if v == "" {
			return nil
		}
		return &v
	}
	for i := range room.State {
		e := &room.State[i]
		switch e.Type {
		case "m.room.name":
			pr.Name = str(e, "name")
		case "m.room.topic":
			pr.Topic = str(e, "topic")
		case "m.room.canonical_alias":
			pr.CanonicalAlias = str(e, "alias")
		case "m.room.avatar":
			pr.AvatarURL = str(e, "url")
		case "m.room.history_visibility":
			pr.WorldReadable = stringField(clientevent.Content(e), "history_visibility") == visibility.WorldReadable
		case "m.room.guest_access":
			pr.GuestCanJoin = stringField(clientevent.Content(e), "guest_access") == "can_join"
		case "m.room.join_rules":
			pr.JoinRule = stringField(clientevent.Content(e), "join_rule")
		case "m.room.create":
			pr.RoomType = str(e, "type")
		}
	}
	return pr
}
