package web

import (
	"context"
	"net/http"
	"slices"

	"github.com/tidwall/gjson"

	"porthole/internal/filter"
	"porthole/internal/stream"
	"porthole/internal/syncer"
)

// roomPage is a room's history, newest at the bottom: the latest page by default (live),
// older ones with ?before=TOKEN, newer ones with ?after=TOKEN.
func (p *Pages) roomPage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ctx := r.Context()
	roomID, err := p.resolve(ctx, r.PathValue("room"))
	if err != nil {
		return nil, err
	}
	before, err := token(r, "before")
	if err != nil {
		return nil, err
	}
	after, err := token(r, "after")
	if err != nil {
		return nil, err
	}
	if before != nil && after != nil {
		return nil, &errPage{http.StatusBadRequest, "That page link is not valid."}
	}
	render := func() ([]byte, error) {
		v, err := p.roomView(ctx, r, roomID, before, after, pageSize)
		if err != nil {
			return nil, err
		}
		return p.render("room.html", v)
	}
	if before == nil && after == nil {
		return p.cached(ctx, "room "+roomID+" "+r.PathValue("room"), roomID, render)
	}
	return render()
}

// embedPage is the compact live view for an iframe, with a compose box where guests may post.
func (p *Pages) embedPage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ctx := r.Context()
	roomID, err := p.resolve(ctx, r.PathValue("room"))
	if err != nil {
		return nil, err
	}
	return p.cached(ctx, "embed "+roomID+" "+r.PathValue("room"), roomID, func() ([]byte, error) {
		v, err := p.roomView(ctx, r, roomID, nil, nil, embedSize)
		if err != nil {
			return nil, err
		}
		v.Embed = true
		v.CanPost = p.cfg.GuestPosting && v.GuestCanJoin
		return p.render("embed.html", v)
	})
}

// eventPage is the permalink of one event: the event with a few around it.
func (p *Pages) eventPage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ctx := r.Context()
	roomID, err := p.resolve(ctx, r.PathValue("room"))
	if err != nil {
		return nil, err
	}
	eventID := r.PathValue("eventId")
	if len(eventID) < 2 || len(eventID) > 255 || eventID[0] != '$' {
		return nil, errNotFound
	}
	v, err := p.header(ctx, r, roomID)
	if err != nil {
		return nil, err
	}
	raw, err := p.sync.Context(ctx, anonymous, syncer.ContextRequest{RoomID: roomID, EventID: eventID, Limit: 10, Filter: &filter.RoomEventFilter{LazyLoadMembers: true}})
	if err != nil {
		return nil, err
	}
	res := gjson.ParseBytes(raw)
	names := memberNames(res.Get("state"))
	var evs []gjson.Result
	before := res.Get("events_before").Array()
	for i := len(before) - 1; i >= 0; i-- {
		evs = append(evs, before[i])
	}
	evs = append(evs, res.Get("event"))
	evs = append(evs, res.Get("events_after").Array()...)
	v.Events = p.events(evs, names, v.Link, eventID)
	v.Permalink = true
	if e := findEvent(v.Events, eventID); e != nil && e.Body != "" {
		v.Description = clip(e.Body, 200)
	}
	if start := res.Get("start").String(); start != "" {
		v.Older = v.Link + "?before=" + urlQuery(start)
	}
	if end := res.Get("end").String(); end != "" {
		v.Newer = v.Link + "?after=" + urlQuery(end)
	}
	return p.render("room.html", v)
}

func findEvent(evs []eventView, id string) *eventView {
	for i := range evs {
		if evs[i].ID == id {
			return &evs[i]
		}
	}
	return nil
}

// roomView reads a room's header and one page of its history.
func (p *Pages) roomView(ctx context.Context, r *http.Request, roomID string, before, after *stream.Pos, limit int) (*roomView, error) {
	v, err := p.header(ctx, r, roomID)
	if err != nil {
		return nil, err
	}
	req := syncer.MessagesRequest{RoomID: roomID, Backward: after == nil, Limit: limit, Filter: &filter.RoomEventFilter{LazyLoadMembers: true}}
	if before != nil {
		req.From = before
	} else if after != nil {
		req.From = after
	}
	raw, err := p.sync.Messages(ctx, anonymous, req)
	if err != nil {
		return nil, err
	}
	res := gjson.ParseBytes(raw)
	chunk := res.Get("chunk").Array()
	if req.Backward {
		slices.Reverse(chunk) // the page reads top to bottom, oldest first
	}
	v.Events = p.events(chunk, memberNames(res.Get("state")), v.Link, "")
	start, end := res.Get("start").String(), res.Get("end").String()
	if req.Backward {
		if end != "" && len(chunk) > 0 {
			v.Older = v.Link + "?before=" + urlQuery(end)
		}
		if before != nil {
			v.Newer = v.Link + "?after=" + urlQuery(start)
		} else {
			// The latest page follows the room live from where it was rendered.
			v.Live, v.From = true, start
		}
	} else {
		v.Older = v.Link + "?before=" + urlQuery(start)
		if end != "" && len(chunk) == limit {
			v.Newer = v.Link + "?after=" + urlQuery(end)
		} else {
			v.Newer = v.Link
		}
	}
	return v, nil
}
