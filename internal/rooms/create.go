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
	"porthole/internal/roomversion"
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
	plan, err := s.planRoom(ctx, sess, req)
	if err != nil {
		return "", err
	}
	var roomID string
	_, err = s.write(ctx, "", func(pc *persistContext) error {
		pc.room = storage.Room{Version: plan.version, Published: req.Visibility == "public"}
		if !id.RoomVersion(plan.version).RoomIDIsCreateEventID() {
			pc.room.ID = "!" + auth.RandomID(18) + ":" + s.cfg.ServerName
		}
		for _, p := range plan.protos {
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
		if plan.alias != "" {
			if err := pc.tx.PutAlias(ctx, storage.Alias{Alias: plan.alias, RoomID: pc.room.ID, Creator: sess.UserID}); err != nil {
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
	s.log.Info("room created", "room", roomID, "version", plan.version, "preset", plan.preset, "creator", sess.UserID)
	return roomID, nil
}

// roomPlan is a validated room creation: the room version and the events to send, in
// order (invites excepted).
type roomPlan struct {
	version, preset, alias string
	protos                 []Proto
	// powerLevels, when set, is the power levels content as is (a room upgrade's copy),
	// instead of the defaults with the request's override.
	powerLevels map[string]jsontext.Value
}

// planRoom checks a createRoom request and turns it into the events that make the room.
func (s *Service) planRoom(ctx context.Context, sess *auth.Session, req CreateRoomRequest) (*roomPlan, error) {
	plan := &roomPlan{version: req.RoomVersion, preset: req.Preset}
	if plan.version == "" {
		plan.version = s.cfg.DefaultVersion
	}
	if !roomversion.IsSupported(plan.version) {
		return nil, mxerr.UnsupportedRoomVersion("This server does not support room version " + plan.version)
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return nil, mxerr.BadJSON("visibility must be public or private")
	}
	switch plan.preset {
	case "":
		plan.preset = "private_chat"
		if req.Visibility == "public" {
			plan.preset = "public_chat"
		}
	case "private_chat", "public_chat", "trusted_private_chat":
	default:
		return nil, mxerr.BadJSON("Unknown preset " + plan.preset)
	}
	if len(req.Invite) > maxInvites {
		return nil, mxerr.InvalidParam("Too many invites")
	}
	for _, u := range req.Invite {
		if err := s.checkLocalUser(ctx, u); err != nil {
			return nil, err
		}
	}
	for _, st := range req.InitialState {
		if st.Type == "" {
			return nil, mxerr.BadJSON("initial_state entries need a type")
		}
		if len(st.Content) == 0 || st.Content.Kind() != '{' {
			return nil, mxerr.BadJSON("initial_state entries need a content object")
		}
		if st.Type == "m.room.create" || st.Type == "m.room.member" {
			return nil, mxerr.BadJSON("initial_state may not contain " + st.Type)
		}
	}
	if req.RoomAliasName != nil {
		name := *req.RoomAliasName
		if name == "" || strings.ContainsAny(name, ":# \t\n") || len(name) > 200 {
			return nil, mxerr.InvalidParam("Invalid room_alias_name")
		}
		plan.alias = "#" + name + ":" + s.cfg.ServerName
		if err := s.mayClaimAlias(sess, plan.alias); err != nil {
			return nil, err
		}
		if _, err := s.store.AliasRoom(ctx, plan.alias); err == nil {
			return nil, mxerr.RoomInUse("Room alias already taken")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.Internal(err)
		}
	}
	me, err := s.store.User(ctx, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	createContent, err := createEventContent(req, plan, sess.UserID)
	if err != nil {
		return nil, err
	}
	plan.protos = creationEvents(req, plan, sess, me, createContent)
	return plan, nil
}

// createEventContent is the m.room.create content: creation_content with the server's own
// keys on top.
func createEventContent(req CreateRoomRequest, plan *roomPlan, creator string) (map[string]jsontext.Value, error) {
	rv := id.RoomVersion(plan.version)
	c := map[string]jsontext.Value{}
	for k, v := range req.CreationContent {
		c[k] = v
	}
	delete(c, "creator")
	c["room_version"] = mustJSON(plan.version)
	if rv.CreatorInContent() { // before room v11; from v11 on the sender is the creator
		c["creator"] = mustJSON(creator)
	}
	if plan.preset == "trusted_private_chat" && rv.PrivilegedRoomCreators() && len(req.Invite) > 0 {
		var extra []string
		if raw, ok := c["additional_creators"]; ok {
			if json.Unmarshal(raw, &extra) != nil {
				return nil, mxerr.BadJSON("additional_creators must be a list of user IDs")
			}
		}
		for _, u := range req.Invite {
			if !contains(extra, u) && u != creator {
				extra = append(extra, u)
			}
		}
		c["additional_creators"] = mustJSON(extra)
	}
	return c, nil
}

// defaultPowerLevels are Synapse's power levels for a new room (room v12: creators have
// infinite power and are not listed), with the request's override on top.
func defaultPowerLevels(req CreateRoomRequest, plan *roomPlan, creator string) map[string]jsontext.Value {
	rv := id.RoomVersion(plan.version)
	users := map[string]int{}
	if !rv.PrivilegedRoomCreators() {
		users[creator] = 100
		if plan.preset == "trusted_private_chat" {
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
	if plan.preset == "public_chat" {
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
	return pl
}

// creationEvents lists the events of a new room in the order the spec gives: create, the
// creator's join, power levels, alias, the preset's state, initial_state, name and topic.
func creationEvents(req CreateRoomRequest, plan *roomPlan, sess *auth.Session, me storage.User, createContent map[string]jsontext.Value) []Proto {
	inInitial := map[string]bool{}
	for _, st := range req.InitialState {
		if st.StateKey == "" {
			inInitial[st.Type] = true
		}
	}
	joinRule, guestAccess := "invite", "can_join"
	if plan.preset == "public_chat" {
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
	state := func(t string, content any) Proto {
		return Proto{Type: t, StateKey: strPtr(""), Content: mustJSON(content)}
	}
	protos := []Proto{
		state("m.room.create", createContent),
		{Type: "m.room.member", StateKey: strPtr(sess.UserID), Content: mustJSON(joinContent)},
		state("m.room.power_levels", plan.powerLevels),
	}
	if plan.powerLevels == nil {
		protos[2] = state("m.room.power_levels", defaultPowerLevels(req, plan, sess.UserID))
	}
	if plan.alias != "" {
		protos = append(protos, state("m.room.canonical_alias", map[string]string{"alias": plan.alias}))
	}
	if !inInitial["m.room.join_rules"] {
		protos = append(protos, state("m.room.join_rules", map[string]string{"join_rule": joinRule}))
	}
	if !inInitial["m.room.history_visibility"] {
		protos = append(protos, state("m.room.history_visibility", map[string]string{"history_visibility": "shared"}))
	}
	if guestAccess == "can_join" && !inInitial["m.room.guest_access"] {
		protos = append(protos, state("m.room.guest_access", map[string]string{"guest_access": guestAccess}))
	}
	for _, st := range req.InitialState {
		if (st.Type == "m.room.name" && req.Name != nil) || (st.Type == "m.room.topic" && req.Topic != nil) {
			continue
		}
		protos = append(protos, Proto{Type: st.Type, StateKey: strPtr(st.StateKey), Content: st.Content})
	}
	if req.Name != nil {
		protos = append(protos, state("m.room.name", map[string]string{"name": *req.Name}))
	}
	if req.Topic != nil {
		protos = append(protos, state("m.room.topic", map[string]any{
			"topic":   *req.Topic,
			"m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic, "mimetype": "text/plain"}}},
		}))
	}
	return protos
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
