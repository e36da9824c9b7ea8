package client_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/tidwall/gjson"

	"porthole/internal/hstest"
)

func upgrade(t *testing.T, c *hstest.Client, roomID string, body map[string]any) string {
	t.Helper()
	return c.Must(t, 200, "POST", hstest.Room(roomID)+"/upgrade", body).Get("replacement_room").String()
}

func stateEvent(t *testing.T, c *hstest.Client, roomID, evType, key string) gjson.Result {
	t.Helper()
	return c.Must(t, 200, "GET", hstest.Room(roomID)+"/state/"+evType+"/"+url.PathEscape(key)+"?format=event", nil).JSON()
}

// An upgrade to every version: the new room names its predecessor, has the old room's
// state, power levels, bans, aliases and directory listing; the old room has the
// tombstone and power levels that silence it; members' tags, m.direct and push rules move.
func TestUpgradeRoom(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	member := s.Register(t, "")
	for _, from := range []string{"1", "10", "12"} {
		for _, to := range roomVersions {
			t.Run("v"+from+"-v"+to, func(t *testing.T) {
				state := map[string]map[string]any{
					"m.room.join_rules":         {"join_rule": "public"},
					"m.room.name":               {"name": "Old name"},
					"m.room.topic":              {"topic": "Old topic"},
					"m.room.history_visibility": {"history_visibility": "joined"},
					"m.room.guest_access":       {"guest_access": "forbidden"},
					"m.room.avatar":             {"url": "mxc://localhost/a"},
					"m.room.encryption":         {"algorithm": "m.megolm.v1.aes-sha2"},
					"m.room.server_acl":         {"allow": []string{"*"}, "allow_ip_literals": false, "deny": []string{"evil.com"}},
				}
				alias := "#up" + from + "-" + to + ":localhost"
				room := owner.CreateRoom(t, map[string]any{"room_version": from, "preset": "public_chat", "visibility": "public",
					"creation_content": map[string]any{"m.federate": false}})
				member.Join(t, room)
				for typ, content := range state {
					owner.SetState(t, room, typ, "", content)
				}
				owner.Must(t, 200, "PUT", "directory/room/"+url.PathEscape(alias), map[string]string{"room_id": room})
				owner.SetState(t, room, "m.room.canonical_alias", "", map[string]any{"alias": alias, "alt_aliases": []string{alias}})
				owner.SetState(t, room, "m.room.member", "@villain:elsewhere", map[string]string{"membership": "ban", "reason": "spam"})
				plBefore := stateContent(t, owner, room, "m.room.power_levels", "").JSON()
				member.Must(t, 200, "PUT", "user/"+url.PathEscape(member.UserID)+"/rooms/"+url.PathEscape(room)+"/tags/work", map[string]any{"order": 0.5})
				member.Must(t, 200, "PUT", "user/"+url.PathEscape(member.UserID)+"/account_data/m.direct", map[string]any{owner.UserID: []string{room}})
				member.Must(t, 200, "PUT", "pushrules/global/room/"+url.PathEscape(room), map[string]any{"actions": []string{"notify"}})
				since := owner.Must(t, 200, "GET", "sync", nil).Get("next_batch").String()

				newRoom := upgrade(t, owner, room, map[string]any{"new_version": to})
				if newRoom == room || newRoom == "" {
					t.Fatalf("replacement_room %q", newRoom)
				}
				// The old room: tombstone, silenced.
				tomb := stateEvent(t, owner, room, "m.room.tombstone", "")
				if tomb.Get("content.replacement_room").String() != newRoom || tomb.Get("content.body").String() == "" {
					t.Errorf("tombstone: %s", tomb)
				}
				oldPL := stateContent(t, owner, room, "m.room.power_levels", "")
				if oldPL.Get("events_default").Int() != 50 || oldPL.Get("invite").Int() != 50 {
					t.Errorf("old room power levels not restricted: %s", oldPL)
				}
				member.MustErr(t, 403, "M_FORBIDDEN", "PUT", hstest.Room(room)+"/send/m.room.message/late", map[string]string{"msgtype": "m.text", "body": "late"})
				// The new room.
				create := stateEvent(t, owner, newRoom, "m.room.create", "")
				if create.Get("content.room_version").String() != to || create.Get("content.predecessor.room_id").String() != room ||
					create.Get("content.m\\.federate").Raw != "false" {
					t.Errorf("new create event: %s", create)
				}
				if pe := create.Get("content.predecessor.event_id"); to == "12" && pe.Exists() {
					t.Errorf("a v12 predecessor cannot name the tombstone: %s", create)
				} else if to != "12" && pe.String() != tomb.Get("event_id").String() {
					t.Errorf("predecessor.event_id %s, tombstone %s", pe, tomb.Get("event_id"))
				}
				for typ, content := range state {
					got := stateContent(t, owner, newRoom, typ, "")
					if !sameJSONValue(got.Body, content) {
						t.Errorf("%s in the new room: %s", typ, got)
					}
				}
				newPL := stateContent(t, owner, newRoom, "m.room.power_levels", "").JSON()
				wantUsers := plBefore.Get("users").Map()
				if to == "12" {
					delete(wantUsers, owner.UserID) // the upgrader is the new room's creator
				} else if from == "12" {
					wantUsers[owner.UserID] = gjson.Parse("100") // a creator of the old room keeps its power
				}
				if len(newPL.Get("users").Map()) != len(wantUsers) || newPL.Get("events").Raw != plBefore.Get("events").Raw ||
					newPL.Get("state_default").Int() != plBefore.Get("state_default").Int() {
					t.Errorf("power levels: %s, old room had %s", newPL, plBefore)
				}
				if ban := stateContent(t, owner, newRoom, "m.room.member", "@villain:elsewhere"); ban.Get("membership").String() != "ban" || ban.Get("reason").String() != "spam" {
					t.Errorf("ban not copied: %s", ban)
				}
				if r := s.Anon().Must(t, 200, "GET", "directory/room/"+url.PathEscape(alias), nil); r.Get("room_id").String() != newRoom {
					t.Errorf("alias not moved: %s", r)
				}
				if got := stateContent(t, owner, room, "m.room.canonical_alias", "").Body; string(got) != "{}" {
					t.Errorf("old canonical alias: %s", got)
				}
				if got := stateContent(t, owner, newRoom, "m.room.canonical_alias", ""); got.Get("alias").String() != alias || got.Get("alt_aliases.0").String() != alias {
					t.Errorf("new canonical alias: %s", got)
				}
				if s.Anon().Must(t, 200, "GET", "directory/list/room/"+url.PathEscape(newRoom), nil).Get("visibility").String() != "public" ||
					s.Anon().Must(t, 200, "GET", "directory/list/room/"+url.PathEscape(room), nil).Get("visibility").String() != "private" {
					t.Error("directory listing not moved")
				}
				// The member's settings, before they even join the new room.
				tags := member.Must(t, 200, "GET", "user/"+url.PathEscape(member.UserID)+"/rooms/"+url.PathEscape(newRoom)+"/tags", nil)
				if tags.Get("tags.work.order").Float() != 0.5 {
					t.Errorf("tags: %s", tags)
				}
				direct := member.Must(t, 200, "GET", "user/"+url.PathEscape(member.UserID)+"/account_data/m.direct", nil)
				if got := direct.Get(escapeKey(owner.UserID)).Array(); len(got) != 2 || got[1].String() != newRoom {
					t.Errorf("m.direct: %s", direct)
				}
				rule := member.Do(t, "GET", "pushrules/global/room/"+url.PathEscape(newRoom), nil)
				if rule.Status != 200 || rule.Get("actions.0").String() != "notify" {
					t.Errorf("push rule: %s", rule)
				}
				// /sync: the old room's timeline starts with the tombstone, the new room
				// with its create event.
				sync := owner.Must(t, 200, "GET", "sync?since="+since+"&filter="+url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`), nil)
				oldTL := sync.Get("rooms.join." + escapeKey(room) + ".timeline.events")
				if oldTL.Get("0.type").String() != "m.room.tombstone" || oldTL.Get("0.content.replacement_room").String() != newRoom {
					t.Errorf("old room in /sync: %s", oldTL)
				}
				newTL := sync.Get("rooms.join." + escapeKey(newRoom) + ".timeline.events")
				if newTL.Get("0.type").String() != "m.room.create" || newTL.Get("0.content.predecessor.room_id").String() != room {
					t.Errorf("new room in /sync: %s", newTL)
				}
				member.Join(t, newRoom)
				member.Send(t, newRoom, "hello again")
			})
		}
	}
}

// sameJSONValue compares a JSON body with a Go value.
func sameJSONValue(body []byte, v any) bool {
	raw, err := json.Marshal(v)
	if err != nil {
		return false
	}
	want := gjson.ParseBytes(raw)
	got := gjson.ParseBytes(body)
	if len(want.Map()) != len(got.Map()) {
		return false
	}
	for k, w := range want.Map() {
		if got.Get(escapeKey(k)).Raw != w.Raw {
			return false
		}
	}
	return true
}

// The upgrading user is raised in the new room only as long as copying needs it: a
// moderator allowed to send tombstones ends with the power levels of the old room in
// both rooms (they may not change the old room's, which stay as they were).
func TestUpgradeRoomAsModerator(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	mod := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	mod.Join(t, room)
	pl := stateContent(t, owner, room, "m.room.power_levels", "").JSON().Value().(map[string]any)
	pl["users"].(map[string]any)[mod.UserID] = 50
	pl["events"].(map[string]any)["m.room.tombstone"] = 50
	owner.SetState(t, room, "m.room.power_levels", "", pl)
	before := stateContent(t, owner, room, "m.room.power_levels", "").Body
	newRoom := upgrade(t, mod, room, map[string]any{"new_version": "10"})
	if got := stateContent(t, mod, newRoom, "m.room.power_levels", "").Body; !sameJSONValue(got, gjson.ParseBytes(before).Value()) {
		t.Errorf("new room power levels %s, want %s", got, before)
	}
	if got := stateContent(t, mod, room, "m.room.power_levels", "").Body; string(got) != string(before) {
		t.Errorf("old room power levels changed: %s", got)
	}
	// Unusual levels: the old room is restricted above users_default.
	room2 := owner.CreateRoom(t, map[string]any{"power_level_content_override": map[string]any{"users_default": 80}})
	upgrade(t, owner, room2, map[string]any{"new_version": "11"})
	if got := stateContent(t, owner, room2, "m.room.power_levels", ""); got.Get("events_default").Int() != 81 || got.Get("invite").Int() != 81 {
		t.Errorf("unusual power levels: %s", got)
	}
}

// Room v12: the upgrader and the additional creators are creators of the new room, with
// the creators' power, and not in its power levels; other versions ignore the field.
func TestUpgradeRoomAdditionalCreators(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	friend := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat", "power_level_content_override": map[string]any{
		"users": map[string]int{owner.UserID: 100, friend.UserID: 50}}})
	friend.Join(t, room)
	newRoom := upgrade(t, owner, room, map[string]any{"new_version": "12", "additional_creators": []string{friend.UserID}})
	create := stateContent(t, owner, newRoom, "m.room.create", "")
	if create.Get("additional_creators.0").String() != friend.UserID {
		t.Errorf("create content: %s", create)
	}
	if users := stateContent(t, owner, newRoom, "m.room.power_levels", "").Get("users"); users.Raw != "{}" {
		t.Errorf("creators in the power levels: %s", users)
	}
	friend.Join(t, newRoom)
	friend.SetState(t, newRoom, "m.room.power_levels", "", map[string]any{"users": map[string]int{"@someone:localhost": 10}})
	// Ignored below v12.
	room2 := owner.CreateRoom(t, nil)
	r2 := upgrade(t, owner, room2, map[string]any{"new_version": "11", "additional_creators": []string{friend.UserID}})
	if stateContent(t, owner, r2, "m.room.create", "").Get("additional_creators").Exists() {
		t.Error("additional_creators set in a v11 room")
	}
	owner.MustErr(t, 400, "M_BAD_JSON", "POST", hstest.Room(room2)+"/upgrade", map[string]any{"new_version": "12", "additional_creators": []string{"not a user"}})
	owner.MustErr(t, 400, "M_BAD_JSON", "POST", hstest.Room(room2)+"/upgrade", map[string]any{"new_version": "12", "additional_creators": "nope"})
}

// A space's children come along; children that were removed (empty content) do not.
func TestUpgradeSpace(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	space := owner.CreateRoom(t, map[string]any{"creation_content": map[string]any{"type": "m.space"}})
	owner.SetState(t, space, "m.space.child", "!a:localhost", map[string]any{"via": []string{"localhost"}})
	owner.SetState(t, space, "m.space.child", "!b:localhost", map[string]any{})
	newSpace := upgrade(t, owner, space, map[string]any{"new_version": "11"})
	if stateContent(t, owner, newSpace, "m.room.create", "").Get("type").String() != "m.space" {
		t.Error("room type not copied")
	}
	if stateContent(t, owner, newSpace, "m.space.child", "!a:localhost").Get("via.0").String() != "localhost" {
		t.Error("space child not copied")
	}
	owner.MustErr(t, 404, "M_NOT_FOUND", "GET", hstest.Room(newSpace)+"/state/m.space.child/"+url.PathEscape("!b:localhost"), nil)
}

// Refused upgrades change nothing.
func TestUpgradeRoomErrors(t *testing.T) {
	s := hstest.New(t)
	owner := s.Register(t, "")
	member := s.Register(t, "")
	outsider := s.Register(t, "")
	room := owner.CreateRoom(t, map[string]any{"preset": "public_chat"})
	member.Join(t, room)
	path := hstest.Room(room) + "/upgrade"
	owner.MustErr(t, 400, "M_UNSUPPORTED_ROOM_VERSION", "POST", path, map[string]any{"new_version": "my_bad_version"})
	owner.MustErr(t, 400, "M_MISSING_PARAM", "POST", path, map[string]any{})
	owner.MustErr(t, 400, "M_BAD_JSON", "POST", path, map[string]any{"new_version": 10})
	owner.MustErr(t, 400, "M_NOT_JSON", "POST", path, "{")
	owner.MustErr(t, 404, "M_NOT_FOUND", "POST", hstest.Room("!fail:unknown")+"/upgrade", map[string]any{"new_version": "10"})
	member.MustErr(t, 403, "M_FORBIDDEN", "POST", path, map[string]any{"new_version": "10"})
	outsider.MustErr(t, 403, "M_FORBIDDEN", "POST", path, map[string]any{"new_version": "10"})
	owner.MustErr(t, 400, "M_INVALID_PARAM", "POST", hstest.Room("not-a-room")+"/upgrade", map[string]any{"new_version": "10"})
	if r := owner.Do(t, "GET", hstest.Room(room)+"/state/m.room.tombstone/", nil); r.Status != 404 {
		t.Errorf("a refused upgrade left a tombstone: %s", r)
	}
	for _, c := range []*hstest.Client{owner, member, outsider} {
		if n := len(c.Must(t, 200, "GET", "joined_rooms", nil).Get("joined_rooms").Array()); n > 1 {
			t.Errorf("a refused upgrade left a room: %d joined", n)
		}
	}
	// Tombstones are checked whichever route sends them.
	owner.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/send/m.room.tombstone/t1", map[string]string{"replacement_room": room})
	owner.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/state/m.room.tombstone/", map[string]string{"replacement_room": room})
	owner.MustErr(t, 400, "M_BAD_JSON", "PUT", hstest.Room(room)+"/state/m.room.tombstone/", map[string]string{"body": "gone"})
	owner.SetState(t, room, "m.room.tombstone", "", map[string]string{"replacement_room": "!elsewhere:localhost"})
	// An upgrade leaves the rest of the server as it was: other rooms keep their aliases.
	other := owner.CreateRoom(t, map[string]any{"room_alias_name": "stays"})
	upgrade(t, owner, owner.CreateRoom(t, nil), map[string]any{"new_version": "10"})
	if r := s.Anon().Must(t, 200, "GET", "directory/room/"+url.PathEscape("#stays:localhost"), nil); r.Get("room_id").String() != other {
		t.Errorf("another room's alias moved: %s", r)
	}
}
