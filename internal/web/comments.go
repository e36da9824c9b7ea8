package web

import (
	"context"
	"encoding/json/jsontext"
	"strings"
	"sync"

	"porthole/internal/auth"
	"porthole/internal/ratelimit"
	"porthole/internal/rooms"
)

// commentRooms creates comment-section rooms on first visit: a page or embed of an unknown
// local alias whose localpart starts with the configured prefix creates that room, readable
// by anyone and open to guests, in the name of the configured owner.
type commentRooms struct {
	prefix, server string
	owner          *auth.Session
	// limit bounds how fast visitors can make the server create rooms, whoever they are.
	limit *ratelimit.Limiter
	mu    sync.Mutex // one creation at a time: two first visitors get one room
}

// matches reports whether alias is one this server creates on demand.
func (c *commentRooms) matches(alias string) bool {
	if c == nil || !strings.HasPrefix(alias, "#"+c.prefix) {
		return false
	}
	local, server, ok := strings.Cut(alias[1:], ":")
	return ok && server == c.server && len(local) > len(c.prefix) && len(alias) <= 255
}

// create makes the room for alias, or finds the one a concurrent visit made.
func (p *Pages) createCommentRoom(ctx context.Context, alias string) (string, error) {
	c := p.comments
	c.mu.Lock()
	defer c.mu.Unlock()
	if roomID, err := p.rooms.ResolveRoom(ctx, alias); err == nil {
		return roomID, nil
	}
	if ok, _ := c.limit.Allow("create"); !ok {
		return "", &errPage{429, "Too many new comment sections at once; try again in a moment."}
	}
	local, _, _ := strings.Cut(alias[1:], ":")
	roomID, err := p.rooms.CreateRoom(ctx, c.owner, rooms.CreateRoomRequest{
		Preset: "public_chat", RoomAliasName: &local,
		InitialState: []rooms.InitialStateEvent{
			{Type: "m.room.history_visibility", Content: jsontext.Value(`{"history_visibility":"world_readable"}`)},
			{Type: "m.room.guest_access", Content: jsontext.Value(`{"guest_access":"can_join"}`)},
		},
	})
	if err != nil {
		p.log.Warn("creating a comment room", "alias", alias, "err", err)
		return "", errNotFound
	}
	p.log.Info("comment room created on first visit", "alias", alias, "room", roomID)
	return roomID, nil
}
