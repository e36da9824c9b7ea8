package rooms

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"strings"

	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
)

// CreateRoomRequest is the body of POST /createRoom.
type CreateRoomRequest struct {
	Visibility                string                    `json:"visibility"`
	RoomAliasName             *string                   `json:"room_alias_name"`
	Name                      *string                   `json:"name"`
	Topic                     *string                   `json:"topic"`
	Invite                    []string                  `json:"invite"`
	RoomVersion               string                    `json:"room_version"`
	CreationContent           map[string]jsontext.Value `json:"creation_content"`
	InitialState              []InitialStateEvent       `json:"initial_state"`
	Preset                    string                    `json:"preset"`
	IsDirect                  bool                      `json:"is_direct"`
	PowerLevelContentOverride map[string]jsontext.Value `json:"power_level_content_override"`
}

// InitialStateEvent is one entry of initial_state.
type InitialStateEvent struct {
	Type     string         `json:"type"`
	StateKey string         `json:"state_key"`
	Content  jsontext.Value `json:"content"`
}

const maxInvites = 100

func mustJSON(v any) jsontext.Value {
	b, err := json.Marshal(v, json.Deterministic(true))
	if err != nil {
		panic(err)
	}
	return b
}

// CreateRoom creates a room in one transaction: either every event of the room's
// creation is stored, or (on any refusal) nothing is.
func (s *Service) CreateRoom(ctx context.Context, sess *auth.Session, req CreateRoomRequest) (string, error) {
	version := req.RoomVersion
	if version == "" {
		version = s.cfg.DefaultVersion
	}
	if !IsSupportedVersion(version) {
		return "", mxerr.UnsupportedRoomVersion("This server does not support room version " + version)
	}
	rv := id.RoomVersion(version)
	switch req.Visibility {
	case "", "private", "public":
	default:
		return "", mxerr.BadJSON("visibility must be public or private")
	}
	preset := req.Preset
	switch preset {
	case "":
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	case "private_chat", "public_chat", "trusted_private_chat":
	default:
		return "", mxerr.BadJSON("Unknown preset " + preset)
	}
	if len(req.Invite) > maxInvites {
		return "", mxerr.InvalidParam("Too many invites")
	}
	for _, u := range req.Invite {
		if err := s.checkLocalUser(ctx, u); err != nil {
			return "", err
		}
	}
	for i, st := range req.InitialState {
		if st.Type == "" {
			return "", mxerr.BadJSON("initial_state entries need a type")
		}
		if len(st.Content) == 0 || st.Content.Kind() != '{' {
			return "", mxerr.BadJSON("initial_state entries need a content object")
		}
		if st.Type == "m.room.create" || (st.Type == "m.room.member") {
			return "", mxerr.BadJSON("initial_state may not contain " + st.Type)
		}
		req.InitialState[i] = st
	}
	var alias string
	if req.RoomAliasName != nil {
		name := *req.RoomAliasName
		if name == "" || strings.ContainsAny(name, ":# \t\n") || len(name) > 200 {
			return "", mxerr.InvalidParam("Invalid room_alias_name")
		}
		alias = "#" + name + ":" + s.cfg.ServerName
		if _, err := s.store.AliasRoom(ctx, alias); err == nil {
			return "", mxerr.RoomInUse("Room alias already taken")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return "", mxerr.Internal(err)
		}
	}
	me, err := s.store.User(ctx, sess.UserID)
	if err != nil {
		return "", mxerr.Internal(err)
	}

	// The m.room.create content: creation_content, with the server's own keys on top.
	createContent := map[string]jsontext.Value{}
	for k, v := range req.CreationContent {
		createContent[k] = v
	}
	delete(createContent, "creator")
	createContent["room_version"] = mustJSON(version)
	if !rv.CreatorInContent() {
		// Room v11+: the sender is the creator.
	} else {
		createContent["creator"] = mustJSON(sess.UserID)
	}
	if preset == "trusted_private_chat" && rv.PrivilegedRoomCreators() && len(req.Invite) > 0 {
		var extra []string
		if raw, ok := createContent["additional_creators"]; ok {
			if json.Unmarshal(raw, &extra) != nil {
				return "", mxerr.BadJSON("additional_creators must be a list of user IDs")
			}
		}
		for _, u := range req.Invite {
			if !contains(extra, u) && u != sess.UserID {
				extra = append(extra, u)
			}
		}
		createContent["additional_creators"] = mustJSON(extra)
	}

	// Power levels (room v12: creators have infinite power and are not listed).
	users := map[string]int{}
	if !rv.PrivilegedRoomCreators() {
		users[sess.UserID] = 100
		if preset == "trusted_private_chat" {
			for _, u := range req.Invite {
				users[u] = 100
			}
		}
	}
	tombstone := 100
	if rv.PrivilegedRoomCreators() {
		tombstone = 150
	}
	invite := 0
	if preset == "public_chat" {
		invite = 50
	}
	pl := map[string]jsontext.Value{
		"users":          mustJSON(users),
		"users_default":  mustJSON(0),
		"events_default": mustJSON(0),
		"state_default":  mustJSON(50),
		"ban":            mustJSON(50),
		"kick":           mustJSON(50),
		"redact":         mustJSON(50),
		"invite":         mustJSON(invite),
		"historical":     mustJSON(100),
		"notifications":  mustJSON(map[string]int{"room": 50}),
		"events": mustJSON(map[string]int{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": tombstone,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		}),
	}
	for k, v := range req.PowerLevelContentOverride {
		pl[k] = v
	}

	inInitial := map[string]bool{}
	for _, st := range req.InitialState {
		if st.StateKey == "" {
			inInitial[st.Type] = true
		}
	}
	joinRule, guestAccess := "invite", "can_join"
	if preset == "public_chat" {
		joinRule, guestAccess = "public", "forbidden"
	}

	joinContent := map[string]any{"membership": "join"}
	if me.DisplayName != nil {
		joinContent["displayname"] = *me.DisplayName
	}
	if me.AvatarURL != nil {
		joinContent["avatar_url"] = *me.AvatarURL
	}
	if sess.IsGuest {
		joinContent["kind"] = "guest"
	}

	protos := []Proto{
		{Type: "m.room.create", StateKey: strPtr(""), Content: mustJSON(createContent)},
		{Type: "m.room.member", StateKey: strPtr(sess.UserID), Content: mustJSON(joinContent)},
		{Type: "m.room.power_levels", StateKey: strPtr(""), Content: mustJSON(pl)},
	}
	if alias != "" {
		protos = append(protos, Proto{Type: "m.room.canonical_alias", StateKey: strPtr(""), Content: mustJSON(map[string]string{"alias": alias})})
	}
	if !inInitial["m.room.join_rules"] {
		protos = append(protos, Proto{Type: "m.room.join_rules", StateKey: strPtr(""), Content: mustJSON(map[string]string{"join_rule": joinRule})})
	}
	if !inInitial["m.room.history_visibility"] {
		protos = append(protos, Proto{Type: "m.room.history_visibility", StateKey: strPtr(""), Content: mustJSON(map[string]string{"history_visibility": "shared"})})
	}
	if guestAccess == "can_join" && !inInitial["m.room.guest_access"] {
		protos = append(protos, Proto{Type: "m.room.guest_access", StateKey: strPtr(""), Content: mustJSON(map[string]string{"guest_access": guestAccess})})
	}
	for _, st := range req.InitialState {
		if (st.Type == "m.room.name" && req.Name != nil) || (st.Type == "m.room.topic" && req.Topic != nil) {
			continue
		}
		protos = append(protos, Proto{Type: st.Type, StateKey: strPtr(st.StateKey), Content: st.Content})
	}
	if req.Name != nil {
		protos = append(protos, Proto{Type: "m.room.name", StateKey: strPtr(""), Content: mustJSON(map[string]string{"name": *req.Name})})
	}
	if req.Topic != nil {
		protos = append(protos, Proto{Type: "m.room.topic", StateKey: strPtr(""), Content: mustJSON(map[string]any{
			"topic":   *req.Topic,
			"m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic, "mimetype": "text/plain"}}},
		})})
	}

	var roomID string
	_, err = s.write(ctx, "", func(pc *persistContext) error {
		pc.room = storage.Room{Version: version, Published: req.Visibility == "public"}
		if !rv.RoomIDIsCreateEventID() {
			pc.room.ID = "!" + auth.RandomID(18) + ":" + s.cfg.ServerName
		}
		for _, p := range protos {
			p.Sender = sess.UserID
			if _, err := pc.persist(p); err != nil {
				if e, ok := mxerr.As(err); ok && e.Code == "M_FORBIDDEN" && p.Type != "m.room.create" {
					return mxerr.InvalidRoomState("Initial state is not allowed: " + e.Message).With(err)
				}
				return err
			}
		}
		for _, u := range req.Invite {
			if _, err := pc.persist(Proto{Type: "m.room.member", StateKey: strPtr(u), Sender: sess.UserID,
				Content: s.inviteContent(ctx, u, req.IsDirect, "")}); err != nil {
				return err
			}
		}
		if alias != "" {
			if err := pc.tx.PutAlias(ctx, storage.Alias{Alias: alias, RoomID: pc.room.ID, Creator: sess.UserID}); err != nil {
				if errors.Is(err, storage.ErrConflict) {
					return mxerr.RoomInUse("Room alias already taken")
				}
				return err
			}
		}
		roomID = pc.room.ID
		return nil
	})
	if err != nil {
		return "", asMatrixError(err)
	}
	s.log.Info("room created", "room", roomID, "version", version, "preset", preset, "creator", sess.UserID)
	return roomID, nil
}

// asMatrixError passes Matrix errors through and hides everything else as a 500.
func asMatrixError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := mxerr.As(err); ok {
		return err
	}
	return mxerr.Internal(err)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
