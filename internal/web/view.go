package web

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/microcosm-cc/bluemonday"
	"github.com/tidwall/gjson"
)

// site is what every page template needs.
type Site struct {
	Path        string
	Title       string
	Description string
	Canonical   string
	NoIndex     bool
}

type directoryView struct {
	Site
	Query string
	Rooms []directoryEntry
	Next  string
}

type directoryEntry struct {
	ID, Name, Alias, Topic, Link, Initial string
	Members                               int
}

// roomView is a room page, an embed or a permalink page.
type roomView struct {
	Site
	RoomID, Name, Alias, Topic, Initial string
	Members                             int
	GuestCanJoin                        bool
	// Link is the room's page (by alias when it has one).
	Link   string
	Events []eventView
	// Older and Newer are the neighbouring pages ("" when there is none).
	Older, Newer string
	// Live pages follow the room from From (a stream token) with the peek stream.
	Live      bool
	From      string
	Embed     bool
	CanPost   bool
	Permalink bool
}

// eventView is one line of a room's history.
type eventView struct {
	ID, Sender, SenderName, Initial string
	// Kind is message, emote, notice, image, file, state, deleted or encrypted.
	Kind     string
	Body     string
	HTML     template.HTML // sanitised formatted body, when the message has one
	Time     string        // RFC 3339
	TimeText string
	Edited   bool
	Image    bool   // an image message whose picture the page shows
	ReplyTo  string // permalink of the event replied to
	Link     string // this event's permalink
	Focus    bool
}

// stateKeys are the state events a page header shows.
var stateKeys = []string{"m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias", "m.room.guest_access", "m.room.join_rules"}

// header reads what a room page shows above its history, and whether search engines may
// index it (only rooms published in the directory, unless the operator says none).
func (p *Pages) header(ctx context.Context, r *http.Request, roomID string) (*roomView, error) {
	raw, joined, err := p.sync.RoomHeader(ctx, anonymous, roomID, stateKeys...)
	if err != nil {
		return nil, err
	}
	v := &roomView{RoomID: roomID, Members: joined, Site: p.siteFor(r)}
	var guestAccess, joinRule string
	for _, e := range gjson.ParseBytes(raw).Array() {
		c := e.Get("content")
		switch e.Get("type").String() {
		case "m.room.name":
			v.Name = clip(c.Get("name").String(), 255)
		case "m.room.topic":
			v.Topic = clip(c.Get("topic").String(), 1000)
		case "m.room.canonical_alias":
			v.Alias = c.Get("alias").String()
		case "m.room.guest_access":
			guestAccess = c.Get("guest_access").String()
		case "m.room.join_rules":
			joinRule = c.Get("join_rule").String()
		}
	}
	v.GuestCanJoin = guestAccess == "can_join" && joinRule == "public"
	v.Title = firstNonEmpty(v.Name, v.Alias, "A public room")
	v.Initial = initial(v.Title)
	v.Description = clip(v.Topic, 200)
	v.Link = p.roomLink(roomID, v.Alias)
	v.Canonical = p.canonical(v.Link)
	if published, err := p.rooms.Published(ctx, roomID); err != nil || !published {
		v.NoIndex = true
	}
	return v, nil
}

// memberNames maps user IDs to display names from member state events.
func memberNames(state gjson.Result) map[string]string {
	names := map[string]string{}
	for _, e := range state.Array() {
		if e.Get("type").String() == "m.room.member" {
			if n := e.Get("content.displayname").String(); n != "" {
				names[e.Get("state_key").String()] = clip(n, 100)
			}
		}
	}
	return names
}

// events turns client events into page lines. Edits, reactions and redactions are not lines
// of their own: an edited message shows its latest text, a redacted one says so.
func (p *Pages) events(evs []gjson.Result, names map[string]string, roomLink, focus string) []eventView {
	out := make([]eventView, 0, len(evs))
	for _, e := range evs {
		typ := e.Get("type").String()
		if typ == "m.reaction" || typ == "m.room.redaction" || e.Get("content.m\\.relates_to.rel_type").String() == "m.replace" {
			continue
		}
		sender := e.Get("sender").String()
		if typ == "m.room.member" {
			// A member event names the member as it is after the change.
			if n := e.Get("content.displayname").String(); n != "" && e.Get("state_key").String() == sender {
				if _, known := names[sender]; !known {
					names[sender] = clip(n, 100)
				}
			}
		}
		v := eventView{ID: e.Get("event_id").String(), Sender: sender, SenderName: displayName(names, sender)}
		v.Initial = initial(v.SenderName)
		v.Link = roomLink + "/event/" + pathEscape(v.ID)
		v.Focus = v.ID == focus
		if ts := e.Get("origin_server_ts").Int(); ts > 0 {
			t := time.UnixMilli(ts).UTC()
			v.Time, v.TimeText = t.Format(time.RFC3339), t.Format("2 Jan 2006 15:04 UTC")
		}
		content := e.Get("content")
		if e.Get("unsigned.redacted_because").Exists() {
			v.Kind, v.Body = "deleted", "Message deleted"
			if e.Get("state_key").Exists() {
				continue // a redacted state event says nothing worth a line
			}
			out = append(out, v)
			continue
		}
		switch {
		case typ == "m.room.message" || typ == "m.sticker":
			if edit := e.Get("unsigned.m\\.relations.m\\.replace"); edit.Exists() && edit.Get("sender").String() == sender {
				if nc := edit.Get("content.m\\.new_content"); nc.IsObject() {
					content, v.Edited = nc, true
				}
			}
			p.message(&v, typ, content)
			if reply := content.Get("m\\.relates_to.m\\.in_reply_to.event_id").String(); reply != "" && !v.Edited {
				v.ReplyTo = roomLink + "/event/" + pathEscape(reply)
			}
		case typ == "m.room.encrypted":
			v.Kind, v.Body = "encrypted", "Encrypted message"
		case e.Get("state_key").Exists():
			v.Kind = "state"
			if v.Body = stateSummary(typ, e, names); v.Body == "" {
				continue
			}
		default:
			continue // other event types are for clients that know them
		}
		out = append(out, v)
	}
	return out
}

// message fills in a message's kind and text; formatted bodies are sanitised.
func (p *Pages) message(v *eventView, typ string, c gjson.Result) {
	v.Body = clip(c.Get("body").String(), 20000)
	switch msgtype := c.Get("msgtype").String(); {
	case typ == "m.sticker":
		v.Kind = "image"
	case msgtype == "m.emote":
		v.Kind = "emote"
	case msgtype == "m.notice":
		v.Kind = "notice"
	case msgtype == "m.image" || msgtype == "m.video":
		v.Kind = "image"
	case msgtype == "m.file" || msgtype == "m.audio":
		v.Kind = "file"
	default:
		v.Kind = "message"
	}
	if v.Kind == "image" || v.Kind == "file" {
		v.Body = firstNonEmpty(clip(c.Get("filename").String(), 255), v.Body, "attachment")
		isPicture := typ == "m.sticker" || c.Get("msgtype").String() == "m.image"
		v.Image = isPicture && p.media != nil && strings.HasPrefix(c.Get("url").String(), "mxc://")
		return
	}
	if c.Get("format").String() == "org.matrix.custom.html" {
		if html := c.Get("formatted_body").String(); html != "" && len(html) <= 65536 {
			clean := policy.Sanitize(html)
			if strings.TrimSpace(clean) != "" {
				v.HTML = template.HTML(clean) // sanitised by the allowlist policy above
			}
		}
	}
}

// stateSummary is a sentence for a state change ("" for changes not worth a line).
func stateSummary(typ string, e gjson.Result, names map[string]string) string {
	who := displayName(names, e.Get("sender").String())
	c := e.Get("content")
	switch typ {
	case "m.room.member":
		target := e.Get("state_key").String()
		name := displayName(names, target)
		if n := c.Get("displayname").String(); n != "" {
			name = clip(n, 100)
		}
		prev := e.Get("unsigned.prev_content.membership").String()
		switch c.Get("membership").String() {
		case "join":
			if prev == "join" {
				if old := e.Get("unsigned.prev_content.displayname").String(); old != c.Get("displayname").String() {
					return clip(firstNonEmpty(old, target), 100) + " is now " + name
				}
				return ""
			}
			return name + " joined"
		case "leave":
			if target != e.Get("sender").String() {
				return who + " removed " + name
			}
			return name + " left"
		case "ban":
			return who + " banned " + name
		case "invite":
			return who + " invited " + name
		case "knock":
			return name + " asked to join"
		}
	case "m.room.name":
		if n := c.Get("name").String(); n != "" {
			return who + " named the room " + clip(n, 255)
		}
		return who + " removed the room's name"
	case "m.room.topic":
		return who + " changed the topic to " + clip(c.Get("topic").String(), 1000)
	case "m.room.avatar":
		return who + " changed the room's picture"
	case "m.room.create":
		return who + " created the room"
	case "m.room.history_visibility":
		if c.Get("history_visibility").String() == "world_readable" {
			return who + " made the room readable by anyone"
		}
		return who + " changed who may read the room"
	case "m.room.tombstone":
		return "This room has moved to a new room"
	}
	return ""
}

// policy is the allowlist for formatted bodies: the HTML the spec suggests clients allow,
// minus images (mxc: URLs need the media repository) and anything that runs or styles.
var policy = func() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "ul", "ol",
		"sup", "sub", "li", "b", "i", "u", "strong", "em", "s", "strike", "code", "hr", "br", "div",
		"table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "details", "summary")
	p.AllowAttrs("href").OnElements("a")
	p.AllowURLSchemes("https", "http", "mailto", "matrix")
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.AllowAttrs("start").Matching(bluemonday.Integer).OnElements("ol")
	p.AllowAttrs("class").Matching(bluemonday.SpaceSeparatedTokens).OnElements("code")
	// The reply fallback repeats the replied-to message: the page links to it instead.
	p.SkipElementsContent("mx-reply")
	return p
}()

func displayName(names map[string]string, userID string) string {
	if n := names[userID]; n != "" {
		return n
	}
	local, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return firstNonEmpty(local, userID)
}

func initial(s string) string {
	s = strings.TrimLeft(s, "@#!")
	r, _ := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return "?"
	}
	return strings.ToUpper(string(r))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func pathEscape(s string) string { return url.PathEscape(s) }

func urlQuery(s string) string { return url.QueryEscape(s) }

func qParam(k, v string) string {
	if v == "" {
		return ""
	}
	return "&" + k + "=" + url.QueryEscape(v)
}
