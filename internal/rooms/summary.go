package rooms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"porthole/internal/auth"
	"porthole/internal/clientevent"
	"porthole/internal/mxerr"
	"porthole/internal/storage"
	"porthole/internal/visibility"
)

// RoomSummary describes a room to someone who may not be in it (the spec's room_summary:
// GET /room_summary and each room of GET /hierarchy).
type RoomSummary struct {
	PublicRoom     `json:",inline"`
	RoomVersion    string   `json:"room_version,omitempty"`
	Encryption     *string  `json:"encryption,omitempty"`
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
	// Membership is the caller's membership (room summary only, when authenticated).
	Membership string `json:"membership,omitempty"`
}

// summaryState is the state a summary is made of.
var summaryState = []storage.StateKeyOf{
	{Type: "m.room.name"}, {Type: "m.room.topic"}, {Type: "m.room.canonical_alias"}, {Type: "m.room.avatar"},
	{Type: "m.room.history_visibility"}, {Type: "m.room.guest_access"}, {Type: "m.room.join_rules"},
	{Type: "m.room.create"}, {Type: "m.room.encryption"},
}

// summarize builds a room's summary if userID ("" for an unauthenticated caller) may see it,
// following Synapse's room_summary.py: rooms anyone may join or knock on, world-readable
// rooms, rooms the user is joined or invited to, and restricted rooms the user may join
// through membership of an allowed room. Rooms this server has no member in are unknown
// here (there is no federation to ask): nil, nil.
func (s *Service) summarize(ctx context.Context, roomID, userID string) (*RoomSummary, error) {
	room, err := s.store.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	joined, _, err := s.store.MemberCounts(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if joined == 0 {
		return nil, nil
	}
	state, err := s.store.CurrentState(ctx, roomID, summaryState...)
	if err != nil {
		return nil, err
	}
	sum := &RoomSummary{PublicRoom: publicRoom(&storage.PublishedRoom{RoomID: roomID, Joined: joined, State: state}), RoomVersion: room.Version}
	var allow []string
	for i := range state {
		e := &state[i]
		switch e.Type {
		case "m.room.encryption":
			if alg := stringField(clientevent.Content(e), "algorithm"); alg != "" {
				sum.Encryption = &alg
			}
		case "m.room.join_rules":
			allow = allowedRooms(clientevent.Content(e))
		}
	}
	restricted := sum.JoinRule == "restricted" || sum.JoinRule == "knock_restricted"
	if restricted {
		sum.AllowedRoomIDs = allow
	}
	if listedJoinRule(sum.JoinRule) || sum.WorldReadable {
		return sum, nil
	}
	if userID == "" {
		return nil, nil
	}
	m, err := s.store.Member(ctx, roomID, userID)
	if err == nil && (m.Membership == visibility.Join || m.Membership == visibility.Invite) {
		return sum, nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if restricted {
		for _, r := range allow {
			if m, err := s.store.Member(ctx, r, userID); err == nil && m.Membership == visibility.Join {
				return sum, nil
			} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return nil, err
			}
		}
	}
	return nil, nil
}

// allowedRooms lists the rooms of a restricted join rule's m.room_membership conditions.
func allowedRooms(content []byte) []string {
	var jr struct {
		Allow []struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		} `json:"allow"`
	}
	if json.Unmarshal(content, &jr) != nil {
		return nil
	}
	var out []string
	for _, a := range jr.Allow {
		if a.Type == "m.room_membership" && ValidRoomID(a.RoomID) {
			out = append(out, a.RoomID)
		}
	}
	return out
}

// Summary answers GET /room_summary/{roomIdOrAlias}, for a caller who may be a guest or
// have no token at all (sess nil). A room the caller may not see is not found, like an
// unknown one.
func (s *Service) Summary(ctx context.Context, sess *auth.Session, roomIDOrAlias string) (*RoomSummary, error) {
	roomID, err := s.ResolveRoom(ctx, roomIDOrAlias)
	if err != nil {
		return nil, err
	}
	userID := ""
	if sess != nil {
		userID = sess.UserID
	}
	sum, err := s.summarize(ctx, roomID, userID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if sum == nil {
		return nil, mxerr.NotFound("Room not found or is not accessible")
	}
	if userID != "" {
		sum.Membership = visibility.Leave
		if m, err := s.store.Member(ctx, roomID, userID); err == nil {
			sum.Membership = m.Membership
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, mxerr.Internal(err)
		}
	}
	return sum, nil
}

// HierarchyRequest is a parsed GET /rooms/{roomId}/hierarchy.
type HierarchyRequest struct {
	RoomID        string
	SuggestedOnly bool
	// MaxDepth < 0 is no limit.
	MaxDepth int
	Limit    int
	From     string
}

// HierarchyRoom is one room of a space hierarchy, with its m.space.child events.
type HierarchyRoom struct {
	RoomSummary   `json:",inline"`
	ChildrenState []jsontext.Value `json:"children_state"`
}

// HierarchyResponse is a page of a space hierarchy.
type HierarchyResponse struct {
	Rooms     []HierarchyRoom `json:"rooms"`
	NextBatch string          `json:"next_batch,omitempty"`
}

// Bounds of the hierarchy walk.
const (
	// MaxHierarchyPage is the most rooms one page holds (and the default, as Synapse's).
	MaxHierarchyPage = 50
	// maxHierarchyRooms is the most rooms one walk visits, over all its pages.
	maxHierarchyRooms = 2000
	// maxSpaceChildren is the most children read of one space.
	maxSpaceChildren = 1000
)

// Hierarchy walks a space depth-first from its root, as Synapse's room_summary.py does,
// over the rooms this server is in (no federation yet), each shown only if the caller may
// see its summary. The root must be one of them (403 otherwise). Pages are positions in
// the walk: the token holds how many rooms were handed out and a digest of the request's
// parameters, so any node can go on from it without stored sessions.
func (s *Service) Hierarchy(ctx context.Context, sess *auth.Session, req HierarchyRequest) (*HierarchyResponse, error) {
	digest := hierarchyDigest(sess.UserID, req)
	skip := 0
	if req.From != "" {
		n, d, ok := strings.Cut(req.From, "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v < 0 || v > maxHierarchyRooms || d != digest {
			return nil, mxerr.InvalidParam("Unknown pagination token")
		}
		skip = v
	}
	root, err := s.summarize(ctx, req.RoomID, sess.UserID)
	if err != nil {
		return nil, mxerr.Internal(err)
	}
	if root == nil {
		return nil, mxerr.Forbidden(fmt.Sprintf("User %s not in room %s, and room previews are disabled", sess.UserID, req.RoomID))
	}
	type entry struct {
		roomID string
		depth  int
	}
	resp := &HierarchyResponse{Rooms: []HierarchyRoom{}}
	queue := []entry{{req.RoomID, 0}}
	seen := map[string]bool{}
	handedOut := 0
	for len(queue) > 0 && len(seen) < maxHierarchyRooms {
		next := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[next.roomID] {
			continue
		}
		seen[next.roomID] = true
		sum := root
		if next.depth > 0 {
			if sum, err = s.summarize(ctx, next.roomID, sess.UserID); err != nil {
				return nil, mxerr.Internal(err)
			}
			if sum == nil {
				continue
			}
		}
		if len(resp.Rooms) == req.Limit {
			// The page is full and this room is the next one out.
			resp.NextBatch = strconv.Itoa(handedOut) + "_" + digest
			return resp, nil
		}
		children, err := s.spaceChildren(ctx, sum, req.SuggestedOnly)
		if err != nil {
			return nil, mxerr.Internal(err)
		}
		if handedOut >= skip {
			hr := HierarchyRoom{RoomSummary: *sum, ChildrenState: make([]jsontext.Value, 0, len(children))}
			for _, c := range children {
				hr.ChildrenState = append(hr.ChildrenState, c.stripped)
			}
			resp.Rooms = append(resp.Rooms, hr)
		}
		handedOut++
		if req.MaxDepth < 0 || next.depth < req.MaxDepth {
			for i := len(children) - 1; i >= 0; i-- {
				queue = append(queue, entry{children[i].roomID, next.depth + 1})
			}
		}
	}
	return resp, nil
}

func hierarchyDigest(userID string, req HierarchyRequest) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%t\x00%d", userID, req.RoomID, req.SuggestedOnly, req.MaxDepth)))
	return hex.EncodeToString(sum[:6])
}

// spaceChild is one m.space.child event of a space, stripped for the client.
type spaceChild struct {
	roomID   string
	order    *string
	ts       int64
	stripped jsontext.Value
}

// spaceChildren returns a space's children in the spec's order (a valid "order" first, by
// it; then by the event's timestamp; then by room ID), without those that have no valid
// via (a removed or redacted child) and, if asked, without those not suggested. Rooms that
// are not spaces have none.
func (s *Service) spaceChildren(ctx context.Context, sum *RoomSummary, suggestedOnly bool) ([]spaceChild, error) {
	if deref(sum.RoomType) != "m.space" {
		return nil, nil
	}
	evs, err := s.store.CurrentStateOfType(ctx, sum.RoomID, "m.space.child", maxSpaceChildren)
	if err != nil {
		return nil, err
	}
	var out []spaceChild
	for i := range evs {
		e := &evs[i]
		content := clientevent.Content(e)
		var c struct {
			Via       []jsontext.Value `json:"via"`
			Order     jsontext.Value   `json:"order"`
			Suggested jsontext.Value   `json:"suggested"`
		}
		if e.StateKey == nil || json.Unmarshal(content, &c) != nil || !validVia(c.Via) {
			continue
		}
		if suggestedOnly && string(c.Suggested) != "true" {
			continue
		}
		child := spaceChild{roomID: *e.StateKey, ts: e.OriginTS}
		var order string
		if c.Order.Kind() == '"' && json.Unmarshal(c.Order, &order) == nil && validOrder(order) {
			child.order = &order
		}
		child.stripped, err = json.Marshal(map[string]any{"type": e.Type, "state_key": *e.StateKey, "content": jsontext.Value(content),
			"sender": e.Sender, "origin_server_ts": e.OriginTS})
		if err != nil {
			return nil, err
		}
		out = append(out, child)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.order == nil) != (b.order == nil) {
			return a.order != nil
		}
		if a.order != nil && *a.order != *b.order {
			return *a.order < *b.order
		}
		if a.ts != b.ts {
			return a.ts < b.ts
		}
		return a.roomID < b.roomID
	})
	return out, nil
}

// validVia is a non-empty list of strings.
func validVia(via []jsontext.Value) bool {
	if len(via) == 0 {
		return false
	}
	for _, v := range via {
		if v.Kind() != '"' {
			return false
		}
	}
	return true
}

// validOrder is the spec's rule for m.space.child's order: at most 50 characters between
// space and tilde.
func validOrder(o string) bool {
	if len(o) > 50 {
		return false
	}
	for i := 0; i < len(o); i++ {
		if o[i] < 0x20 || o[i] > 0x7e {
			return false
		}
	}
	return true
}
