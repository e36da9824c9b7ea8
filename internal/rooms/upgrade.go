package rooms

import (
	"bytes"
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/live"
	"porthole/internal/mxerr"
	"porthole/internal/push"
	"porthole/internal/roomversion"
	"porthole/internal/storage"
)

// upgradeCopiedState is the state a room upgrade copies to the new room, in this order
// (Synapse's list; the spec's recommendation), besides the power levels.
var upgradeCopiedState = []string{
	"m.room.join_rules", "m.room.name", "m.room.topic", "m.room.history_visibility",
	"m.room.guest_access", "m.room.avatar", "m.room.encryption", "m.room.server_acl",
}

// maxAdditionalCreators bounds the additional_creators of an upgrade to room v12.
const maxAdditionalCreators = 100

// UpgradeRoom replaces a room with a new room of another version (POST /upgrade), as
// Synapse does: the user must be allowed to send m.room.tombstone in the old room; the new
// room's create event names its predecessor; the new room gets a copy of the old room's
// join rules, name, topic, history visibility, guest access, avatar, encryption, server ACL
// and (for a space) its children, its power levels (the upgrader raised to what copying
// needs until the end), its bans and its directory listing; local aliases and the
// canonical alias move to it; every local member's tags, m.direct entry and push rules for
// the old room are copied to it; the old room gets the tombstone and power levels that
// keep ordinary members from talking and inviting. It all happens in one transaction:
// a refused upgrade changes nothing.
func (s *Service) UpgradeRoom(ctx context.Context, sess *auth.Session, oldRoomID, newVersion string, additionalCreators []string) (string, error) {
	if !roomversion.IsSupported(newVersion) {
		return "", mxerr.UnsupportedRoomVersion("This server does not support room version " + newVersion)
	}
	if !ValidRoomID(oldRoomID) {
		return "", mxerr.InvalidParam("Invalid room ID")
	}
	rv := id.RoomVersion(newVersion)
	if !rv.PrivilegedRoomCreators() {
		additionalCreators = nil // the spec: ignored for versions without them
	}
	if len(additionalCreators) > maxAdditionalCreators {
		return "", mxerr.InvalidParam("Too many additional_creators")
	}
	for _, u := range additionalCreators {
		if !ValidUserID(u) {
			return "", mxerr.BadJSON("additional_creators must be a list of user IDs: " + u)
		}
	}
	me, err := s.store.User(ctx, sess.UserID)
	if err != nil {
		return "", mxerr.Internal(err)
	}
	lock := s.roomLock(oldRoomID)
	lock.Lock()
	defer lock.Unlock()
	var newRoomID string
	_, err = s.hub.Commit(ctx, func(tx storage.Tx) ([]live.Published, error) {
		old, err := tx.Room(ctx, oldRoomID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.NotFound("Unknown room " + oldRoomID)
		} else if err != nil {
			return nil, err
		}
		u := &upgrade{s: s, ctx: ctx, tx: tx, sess: sess, me: me, version: rv, additional: additionalCreators,
			old: &persistContext{s: s, ctx: ctx, tx: tx, room: old},
			new: &persistContext{s: s, ctx: ctx, tx: tx}}
		if err := u.run(); err != nil {
			return nil, err
		}
		newRoomID = u.new.room.ID
		pubs := append(u.old.pubs, u.new.pubs...)
		pubs = append(pubs, u.pubs...)
		slices.SortStableFunc(pubs, func(a, b live.Published) int { return int(a.Item.Pos - b.Item.Pos) })
		return pubs, nil
	})
	if err != nil {
		return "", roomError(err, mxerr.NotFound("Unknown room "+oldRoomID))
	}
	s.log.Info("room upgraded", "room", oldRoomID, "replacement", newRoomID, "version", newVersion, "by", sess.UserID)
	return newRoomID, nil
}

// upgrade is a room upgrade in progress inside its transaction.
type upgrade struct {
	s          *Service
	ctx        context.Context
	tx         storage.Tx
	sess       *auth.Session
	me         storage.User
	version    id.RoomVersion
	additional []string
	old, new   *persistContext
	// pubs are the account-data changes of the members' copied settings.
	pubs []live.Published
	// oldState is the old room's current state of the keys the upgrade reads.
	oldState map[storage.StateKeyOf]*storage.Event
}

func (u *upgrade) run() error {
	if err := u.readOldState(); err != nil {
		return err
	}
	// The tombstone is checked first: without the power to send it, nothing happens. Up
	// to v11 the new room's ID is chosen now and the tombstone's ID goes into the new
	// create event; a v12 room's ID is its create event's, known only once it is built.
	newID := "!" + auth.RandomID(18) + ":" + u.s.cfg.ServerName
	tombstone, err := u.s.prepare(u.ctx, u.tx, u.old.room, tombstoneProto(u.sess.UserID, newID))
	if err != nil {
		return err
	}
	predecessor := map[string]string{"room_id": u.old.room.ID}
	if u.version.RoomIDIsCreateEventID() {
		newID = ""
	} else {
		predecessor["event_id"] = string(tombstone.eventID)
	}
	initialPL, finalPL := u.powerLevels()
	plan := u.newRoomPlan(predecessor, initialPL)
	u.new.room = storage.Room{ID: newID, Version: string(u.version), Published: u.old.room.Published}
	for _, p := range plan.protos {
		p.Sender = u.sess.UserID
		if _, err := u.new.persist(p); err != nil {
			return err
		}
	}
	if err := u.copyBans(); err != nil {
		return err
	}
	if newID == "" {
		if _, err := u.old.persist(tombstoneProto(u.sess.UserID, u.new.room.ID)); err != nil {
			return err
		}
	} else if _, err := u.old.commit(tombstone); err != nil {
		return err
	}
	if err := u.moveAliases(); err != nil {
		return err
	}
	if u.old.room.Published {
		if err := u.tx.SetPublished(u.ctx, u.old.room.ID, false); err != nil {
			return err
		}
	}
	if err := u.copyMemberSettings(); err != nil {
		return err
	}
	if err := u.restrictOldRoom(); err != nil {
		return err
	}
	if finalPL != nil && !sameJSON(mustJSON(finalPL), mustJSON(initialPL)) {
		if _, err := u.new.persist(Proto{Type: "m.room.power_levels", StateKey: strPtr(""), Sender: u.sess.UserID, Content: mustJSON(finalPL)}); err != nil {
			return err
		}
	}
	return nil
}

func tombstoneProto(sender, replacement string) Proto {
	return Proto{Type: "m.room.tombstone", StateKey: strPtr(""), Sender: sender,
		Content: mustJSON(map[string]string{"body": "This room has been replaced", "replacement_room": replacement})}
}

// readOldState reads the old room's state the upgrade copies or changes.
func (u *upgrade) readOldState() error {
	keys := []storage.StateKeyOf{{Type: "m.room.create"}, {Type: "m.room.power_levels"}, {Type: "m.room.canonical_alias"}}
	for _, t := range upgradeCopiedState {
		keys = append(keys, storage.StateKeyOf{Type: t})
	}
	evs, err := u.tx.CurrentState(u.ctx, u.old.room.ID, keys...)
	if err != nil {
		return err
	}
	u.oldState = make(map[storage.StateKeyOf]*storage.Event, len(evs))
	for i := range evs {
		u.oldState[storage.StateKeyOf{Type: evs[i].Type, StateKey: *evs[i].StateKey}] = &evs[i]
	}
	return nil
}

func (u *upgrade) oldContent(evType string) []byte {
	if e := u.oldState[storage.StateKeyOf{Type: evType}]; e != nil {
		return clientevent.Content(e)
	}
	return nil
}

// newRoomPlan lists the new room's events: those of a private_chat room whose initial
// state is the copied state, with the create content of an upgrade.
func (u *upgrade) newRoomPlan(predecessor map[string]string, powerLevels map[string]jsontext.Value) *roomPlan {
	oldCreate := u.oldContent("m.room.create")
	creation := map[string]jsontext.Value{"predecessor": mustJSON(predecessor)}
	var c map[string]jsontext.Value
	if json.Unmarshal(oldCreate, &c) == nil {
		if string(c["m.federate"]) == "false" {
			creation["m.federate"] = c["m.federate"]
		}
		if t, ok := c["type"]; ok {
			creation["type"] = t
		}
	}
	if u.additional != nil {
		creation["additional_creators"] = mustJSON(u.additional)
	}
	req := CreateRoomRequest{Preset: "private_chat", CreationContent: creation}
	for _, t := range upgradeCopiedState {
		if content := u.oldContent(t); content != nil {
			req.InitialState = append(req.InitialState, InitialStateEvent{Type: t, Content: content})
		}
	}
	if stringField(oldCreate, "type") == "m.space" {
		req.InitialState = append(req.InitialState, u.spaceChildren()...)
	}
	plan := &roomPlan{version: string(u.version), preset: req.Preset, powerLevels: powerLevels}
	createContent, _ := createEventContent(req, plan, u.sess.UserID)
	plan.protos = creationEvents(req, plan, u.sess, u.me, createContent)
	return plan
}

// spaceChildren are a space's m.space.child events that still name a child (an emptied
// one was removed from the space).
func (u *upgrade) spaceChildren() []InitialStateEvent {
	all, err := u.tx.CurrentState(u.ctx, u.old.room.ID)
	if err != nil {
		return nil
	}
	var out []InitialStateEvent
	for i := range all {
		if all[i].Type == "m.space.child" {
			if content := clientevent.Content(&all[i]); len(bytes.TrimSpace(content)) > 2 {
				out = append(out, InitialStateEvent{Type: all[i].Type, StateKey: *all[i].StateKey, Content: content})
			}
		}
	}
	return out
}

// powerLevels returns the new room's first power levels (the old room's, with the
// upgrader raised to the level copying the state and bans needs) and its last (the old
// room's as they were): nil, nil when the old room has none. Room v12 creators are not
// listed (their power is the creator's).
func (u *upgrade) powerLevels() (initial, final map[string]jsontext.Value) {
	old := u.oldContent("m.room.power_levels")
	if old == nil {
		return nil, nil
	}
	initial, final = fixupPowerLevels(old), fixupPowerLevels(old)
	level := func(pl map[string]jsontext.Value, key string, def int) int {
		if n, ok := plInt(pl[key]); ok {
			return n
		}
		return def
	}
	needed := max(level(initial, "state_default", 50), level(initial, "ban", 50))
	var events map[string]int
	json.Unmarshal(initial["events"], &events)
	for _, n := range events {
		needed = max(needed, n)
	}
	users := map[string]jsontext.Value{}
	json.Unmarshal(initial["users"], &users)
	current := level(initial, "users_default", 0)
	if n, ok := plInt(users[u.sess.UserID]); ok {
		current = n
	}
	if current < needed {
		users[u.sess.UserID] = mustJSON(needed)
	}
	initial["users"] = mustJSON(users)
	if id.RoomVersion(u.old.room.Version).PrivilegedRoomCreators() && !u.version.PrivilegedRoomCreators() && u.oldCreator(u.sess.UserID) {
		// A creator of a v12 room has a creator's power without being listed; in a room
		// without privileged creators it keeps the level it was raised to (Synapse would
		// drop it to users_default).
		finalUsers := map[string]jsontext.Value{}
		json.Unmarshal(final["users"], &finalUsers)
		finalUsers[u.sess.UserID] = users[u.sess.UserID]
		final["users"] = mustJSON(finalUsers)
	}
	if u.version.PrivilegedRoomCreators() {
		for _, pl := range []map[string]jsontext.Value{initial, final} {
			users := map[string]jsontext.Value{}
			json.Unmarshal(pl["users"], &users)
			for _, c := range append([]string{u.sess.UserID}, u.additional...) {
				delete(users, c)
			}
			pl["users"] = mustJSON(users)
		}
	}
	return initial, final
}

// oldCreator reports whether a user is a creator of the old room (its create event's
// sender or one of its additional_creators).
func (u *upgrade) oldCreator(userID string) bool {
	e := u.oldState[storage.StateKeyOf{Type: "m.room.create"}]
	if e == nil {
		return false
	}
	var c struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	json.Unmarshal(clientevent.Content(e), &c)
	return e.Sender == userID || slices.Contains(c.AdditionalCreators, userID)
}

// fixupPowerLevels copies power levels content with every level an integer, as Synapse's
// copy_and_fixup_power_levels_contents does: older room versions allowed levels written as
// strings ("50"), which later versions reject; what is neither is left out.
func fixupPowerLevels(content []byte) map[string]jsontext.Value {
	var in map[string]jsontext.Value
	json.Unmarshal(content, &in)
	out := make(map[string]jsontext.Value, len(in))
	for k, v := range in {
		if v.Kind() == '{' {
			var inner map[string]jsontext.Value
			json.Unmarshal(v, &inner)
			fixed := make(map[string]int, len(inner))
			for k1, v1 := range inner {
				if n, ok := plInt(v1); ok {
					fixed[k1] = n
				}
			}
			out[k] = mustJSON(fixed)
		} else if n, ok := plInt(v); ok {
			out[k] = mustJSON(n)
		}
	}
	return out
}

// plInt reads a power level: an integer, or a string holding one.
func plInt(v jsontext.Value) (int, bool) {
	switch v.Kind() {
	case '0':
		var f float64
		if json.Unmarshal(v, &f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int(f), true
	case '"':
		var s string
		json.Unmarshal(v, &s)
		n, err := strconv.Atoi(strings.TrimSpace(s))
		return n, err == nil && n >= -(1<<53) && n <= 1<<53
	}
	return 0, false
}

// copyBans bans in the new room everyone banned from the old one, with the same content.
// A ban the auth rules refuse (a banned user with more power than the upgrader) is left out.
func (u *upgrade) copyBans() error {
	bans, err := u.tx.Members(u.ctx, u.old.room.ID, "ban")
	if err != nil || len(bans) == 0 {
		return err
	}
	ids := make([]string, len(bans))
	for i, b := range bans {
		ids[i] = b.EventID
	}
	evs, err := u.tx.EventsByIDs(u.ctx, ids)
	if err != nil {
		return err
	}
	for i := range evs {
		p := Proto{Type: "m.room.member", StateKey: evs[i].StateKey, Sender: u.sess.UserID, Content: clientevent.Content(&evs[i])}
		if _, err := u.new.persist(p); err != nil {
			if e, ok := mxerr.As(err); ok && e.Code == "M_FORBIDDEN" {
				u.s.log.Info("ban not copied to the upgraded room", "room", u.new.room.ID, "user", *evs[i].StateKey, "err", err)
				continue
			}
			return err
		}
	}
	return nil
}

// moveAliases points the old room's local aliases at the new room and moves the local
// aliases of its canonical alias event there (the old room keeps the others).
func (u *upgrade) moveAliases() error {
	aliases, err := u.tx.RoomAliases(u.ctx, u.old.room.ID)
	if err != nil {
		return err
	}
	for _, alias := range aliases {
		a, err := u.tx.AliasRoom(u.ctx, alias)
		if err != nil {
			return err
		}
		if err := u.tx.DeleteAlias(u.ctx, alias); err != nil {
			return err
		}
		a.RoomID = u.new.room.ID
		if err := u.tx.PutAlias(u.ctx, a); err != nil {
			return err
		}
	}
	raw := u.oldContent("m.room.canonical_alias")
	if raw == nil {
		return nil
	}
	var oldContent map[string]jsontext.Value
	if json.Unmarshal(raw, &oldContent) != nil {
		return nil
	}
	newContent := map[string]jsontext.Value{}
	local := func(alias string) bool {
		_, server, _ := strings.Cut(alias, ":")
		return server == u.s.cfg.ServerName
	}
	if alias := stringField(raw, "alias"); alias != "" && local(alias) {
		newContent["alias"] = oldContent["alias"]
		delete(oldContent, "alias")
	}
	var alt []string
	if json.Unmarshal(oldContent["alt_aliases"], &alt) == nil && len(alt) > 0 {
		moved := []string{}
		kept := []string{}
		for _, a := range alt {
			if local(a) {
				moved = append(moved, a)
			} else {
				kept = append(kept, a)
			}
		}
		newContent["alt_aliases"] = mustJSON(moved)
		if len(kept) > 0 {
			oldContent["alt_aliases"] = mustJSON(kept)
		} else {
			delete(oldContent, "alt_aliases")
		}
	}
	if _, err := u.old.persist(Proto{Type: "m.room.canonical_alias", StateKey: strPtr(""), Sender: u.sess.UserID, Content: mustJSON(oldContent)}); err != nil {
		return err
	}
	_, err = u.new.persist(Proto{Type: "m.room.canonical_alias", StateKey: strPtr(""), Sender: u.sess.UserID, Content: mustJSON(newContent)})
	return err
}

// copyMemberSettings copies, for every local user joined to the old room, their tags of
// the old room, its place in their m.direct and their push rules about it to the new room
// (Synapse's transfer_room_state_on_room_upgrade).
func (u *upgrade) copyMemberSettings() error {
	members, err := u.tx.Members(u.ctx, u.old.room.ID, "join")
	if err != nil {
		return err
	}
	oldID, newID := u.old.room.ID, u.new.room.ID
	for _, m := range members {
		if id.UserID(m.UserID).Homeserver() != u.s.cfg.ServerName {
			continue
		}
		oldTags, err := u.accountData(m.UserID, oldID, "m.tag")
		if err != nil {
			return err
		}
		var tags struct {
			Tags map[string]jsontext.Value `json:"tags"`
		}
		if json.Unmarshal(oldTags, &tags) == nil && len(tags.Tags) > 0 {
			if err := u.changeAccountData(m.UserID, newID, "m.tag", func(cur []byte) ([]byte, bool) {
				var into struct {
					Tags map[string]jsontext.Value `json:"tags"`
				}
				if json.Unmarshal(cur, &into) != nil || into.Tags == nil {
					into.Tags = map[string]jsontext.Value{}
				}
				for k, v := range tags.Tags {
					into.Tags[k] = v
				}
				return mustJSON(into), true
			}); err != nil {
				return err
			}
		}
		if err := u.changeAccountData(m.UserID, "", "m.direct", func(cur []byte) ([]byte, bool) {
			return directWithRoom(cur, oldID, newID)
		}); err != nil {
			return err
		}
		if err := u.changeAccountData(m.UserID, "", push.AccountDataType, func(cur []byte) ([]byte, bool) {
			if cur == nil {
				return nil, false // never changed: only the defaults, which name no room
			}
			rs := push.Load(cur, m.UserID)
			if !push.CopyRoomRules(&rs, oldID, newID) {
				return nil, false
			}
			raw, err := push.Encode(rs)
			return raw, err == nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// directWithRoom adds newRoom to the m.direct entry that lists oldRoom (the first, in
// key order), if any does.
func directWithRoom(direct []byte, oldRoom, newRoom string) ([]byte, bool) {
	var byUser map[string]jsontext.Value
	if json.Unmarshal(direct, &byUser) != nil {
		return nil, false
	}
	keys := make([]string, 0, len(byUser))
	for k := range byUser {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var rooms []string
		if json.Unmarshal(byUser[k], &rooms) != nil || !slices.Contains(rooms, oldRoom) || slices.Contains(rooms, newRoom) {
			continue
		}
		byUser[k] = mustJSON(append(rooms, newRoom))
		return mustJSON(byUser), true
	}
	return nil, false
}

func (u *upgrade) accountData(userID, roomID, dataType string) ([]byte, error) {
	a, err := u.tx.AccountDataItem(u.ctx, userID, roomID, dataType)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	return a.Content, err
}

// changeAccountData replaces an account-data item with what change makes of it (nil when
// there is none), unless change declines, and publishes it like any account-data change.
func (u *upgrade) changeAccountData(userID, roomID, dataType string, change func(cur []byte) ([]byte, bool)) error {
	cur, err := u.accountData(userID, roomID, dataType)
	if err != nil {
		return err
	}
	content, ok := change(cur)
	if !ok {
		return nil
	}
	pos, err := u.tx.NextPos(u.ctx)
	if err != nil {
		return err
	}
	if err := u.tx.PutAccountData(u.ctx, storage.AccountData{UserID: userID, RoomID: roomID, Type: dataType, Content: content, Pos: pos}); err != nil {
		return err
	}
	u.pubs = append(u.pubs, live.Published{Item: live.Item{Pos: pos}, Users: []string{userID}, AccountDataOf: userID, AccountDataType: dataType})
	return nil
}

// restrictOldRoom raises the old room's events_default and invite to the greater of 50
// and users_default+1, so that ordinary members no longer talk or invite there. An
// upgrader who may not change the power levels leaves them as they are (as in Synapse).
func (u *upgrade) restrictOldRoom() error {
	raw := u.oldContent("m.room.power_levels")
	if raw == nil {
		return nil
	}
	pl := fixupPowerLevels(raw)
	usersDefault, _ := plInt(pl["users_default"])
	restricted := max(usersDefault+1, 50)
	changed := false
	for _, k := range []string{"invite", "events_default"} {
		if n, _ := plInt(pl[k]); n < restricted {
			pl[k] = mustJSON(restricted)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	_, err := u.old.persist(Proto{Type: "m.room.power_levels", StateKey: strPtr(""), Sender: u.sess.UserID, Content: mustJSON(pl)})
	if e, ok := mxerr.As(err); ok && e.Code == "M_FORBIDDEN" {
		u.s.log.Info("old room's power levels not restricted after upgrade", "room", u.old.room.ID, "err", err)
		return nil
	}
	return err
}

// checkTombstone applies the server's checks to a local m.room.tombstone (as Synapse's
// event validator): a state event naming another room.
func checkTombstone(p Proto, roomID string, content jsontext.Value) error {
	if p.StateKey == nil {
		return mxerr.BadJSON("m.room.tombstone must be a state event")
	}
	replacement := stringField(content, "replacement_room")
	if replacement == "" {
		return mxerr.BadJSON("m.room.tombstone content needs a replacement_room")
	}
	if replacement == roomID {
		return mxerr.BadJSON("A tombstone cannot name the room it is sent in")
	}
	return nil
}
