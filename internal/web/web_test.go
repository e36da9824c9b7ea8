package web_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"porthole/internal/config"
	"porthole/internal/hstest"
)

// page is a fetched and parsed HTML page.
type page struct {
	status int
	header http.Header
	doc    *html.Node
	raw    string
}

func get(t *testing.T, s *hstest.Server, path string) page {
	t.Helper()
	res, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%s: not HTML: %v", path, err)
	}
	return page{status: res.StatusCode, header: res.Header, doc: doc, raw: string(body)}
}

// find returns the elements matching tag and, when given, an attribute's value.
func (p page) find(tag, attr, value string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag && (attr == "" || attrOf(n, attr) == value) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.doc)
	return out
}

// withClass returns the elements of tag whose class list holds class.
func (p page) withClass(tag, class string) []*html.Node {
	var out []*html.Node
	for _, n := range p.find(tag, "", "") {
		for _, c := range strings.Fields(attrOf(n, "class")) {
			if c == class {
				out = append(out, n)
			}
		}
	}
	return out
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// bodies are the texts of a page's message lines, in page order.
func (p page) bodies() []string {
	var out []string
	for _, li := range p.withClass("li", "ev") {
		for _, b := range findIn(li, "body") {
			out = append(out, text(b))
		}
	}
	return out
}

func findIn(n *html.Node, class string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && strings.Contains(" "+attrOf(n, "class")+" ", " "+class+" ") {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func TestRoomPageShowsHistoryAndEscapesEverything(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	evil := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	alice.Must(t, 200, "PUT", "profile/"+url.PathEscape(alice.UserID)+"/displayname", map[string]string{"displayname": "Al " + evil})
	room := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Room " + evil, "topic": "Topic " + evil,
		"room_alias_name": "webroom", "initial_state": []map[string]any{
			{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}},
		}})
	alice.Send(t, room, "plain "+evil)
	alice.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "formatted",
		"format": "org.matrix.custom.html", "formatted_body": `<b>bold</b><script>alert(3)</script><a href="javascript:alert(4)">js</a><a href="https://example.org/x">ok</a><img src="data:image/png;base64,AA"><p onclick="alert(5)">para</p>`})

	p := get(t, s, "/room/"+url.PathEscape(room))
	if p.status != 200 {
		t.Fatalf("room page: %d %s", p.status, p.raw)
	}
	if got := p.find("script", "", ""); len(got) != 1 || attrOf(got[0], "src") != "/static/live.js" {
		t.Fatalf("the only script must be ours: %d scripts", len(got))
	}
	if n := len(p.find("img", "", "")); n != 0 {
		t.Fatalf("%d img elements made it into the page", n)
	}
	for _, n := range p.find("a", "", "") {
		if h := attrOf(n, "href"); strings.HasPrefix(strings.ToLower(h), "javascript:") || strings.HasPrefix(h, "data:") {
			t.Fatalf("dangerous link %q", h)
		}
	}
	for _, n := range p.find("p", "", "") {
		if attrOf(n, "onclick") != "" {
			t.Fatal("an event handler attribute survived")
		}
	}
	if title := p.find("title", "", ""); len(title) != 1 || text(title[0]) != "Room "+evil {
		t.Fatalf("title is not the room's escaped name: %q", text(title[0]))
	}
	bodies := p.bodies()
	if !contains(bodies, "plain "+evil) {
		t.Fatalf("the plain message is not shown as text: %q", bodies)
	}
	if !contains(bodies, "boldjsokpara") {
		t.Fatalf("the formatted message is not shown sanitised: %q", bodies)
	}
	var ok bool
	for _, a := range p.find("a", "href", "https://example.org/x") {
		ok = strings.Contains(attrOf(a, "rel"), "nofollow")
	}
	if !ok {
		t.Fatal("a safe link is missing or lacks rel=nofollow")
	}
	if got := p.withClass("span", "sender"); len(got) == 0 || text(got[0]) != "Al "+evil {
		t.Fatalf("sender name not shown escaped")
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	if desc := p.find("meta", "property", "og:description"); len(desc) != 1 || attrOf(desc[0], "content") != "Topic "+evil {
		t.Fatal("og:description is not the topic")
	}
	// Published rooms may be indexed; the alias is the room's link.
	if len(p.find("meta", "name", "robots")) != 0 {
		t.Fatal("a room published in the directory asks not to be indexed")
	}
	if live := p.find("ol", "id", "timeline"); len(live) != 1 || attrOf(live[0], "data-from") == "" {
		t.Fatal("the latest page is not live")
	}
	byAlias := get(t, s, "/room/"+url.PathEscape("#webroom:"+s.Name))
	if byAlias.status != 200 || !contains(byAlias.bodies(), "plain "+evil) {
		t.Fatalf("by alias: %d", byAlias.status)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRoomPagesOnlyForWorldReadableRooms(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	private := alice.CreateRoom(t, map[string]any{"preset": "private_chat"})
	shared := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_alias_name": "sharedroom"})
	alice.Send(t, shared, "secret before")

	notFound := get(t, s, "/room/"+url.PathEscape("!nosuchroom:"+s.Name))
	for name, path := range map[string]string{
		"private":         "/room/" + url.PathEscape(private),
		"shared":          "/room/" + url.PathEscape(shared),
		"shared alias":    "/room/" + url.PathEscape("#sharedroom:"+s.Name),
		"unknown alias":   "/room/" + url.PathEscape("#nope:"+s.Name),
		"malformed":       "/room/nonsense",
		"embed private":   "/embed/" + url.PathEscape(private),
		"event private":   "/room/" + url.PathEscape(private) + "/event/" + url.PathEscape("$x"),
		"event not an id": "/room/" + url.PathEscape(shared) + "/event/nonsense",
	} {
		p := get(t, s, path)
		if p.status != 404 {
			t.Errorf("%s: %d, want 404", name, p.status)
		}
		// Not found says the same whether the room exists or not.
		if h := p.find("main", "", ""); len(h) != 1 || text(h[0]) != text(notFound.find("main", "", "")[0]) {
			t.Errorf("%s: the 404 page differs from an unknown room's", name)
		}
	}

	// Once world-readable, the room shows what came after, not what came before.
	alice.SetState(t, shared, "m.room.history_visibility", "", map[string]string{"history_visibility": "world_readable"})
	alice.Send(t, shared, "public after")
	p := get(t, s, "/room/"+url.PathEscape(shared))
	if p.status != 200 {
		t.Fatalf("world-readable room: %d", p.status)
	}
	b := p.bodies()
	if contains(b, "secret before") || !contains(b, "public after") {
		t.Fatalf("visibility not applied: %q", b)
	}
	// Not published in the directory: search engines are asked not to index it.
	if len(p.find("meta", "name", "robots")) != 1 {
		t.Fatal("an unpublished room's page does not say noindex")
	}
}

func TestRoomPagesPaginateBothWays(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	room := alice.WorldReadableRoom(t)
	const n = 120
	for i := range n {
		alice.Send(t, room, fmt.Sprintf("msg %03d", i))
	}
	link := "/room/" + url.PathEscape(room)
	latest := get(t, s, link)
	seen := latest.bodies()
	if seen[len(seen)-1] != fmt.Sprintf("msg %03d", n-1) {
		t.Fatalf("newest is not last: %q", seen[len(seen)-1])
	}
	// Follow "older" to the beginning, then "newer" back to the latest page.
	all := append([]string(nil), seen...)
	cur := latest
	pages := 0
	for {
		prev := cur.find("link", "rel", "prev")
		if len(prev) == 0 {
			break
		}
		if pages++; pages > 10 {
			t.Fatal("older links do not end")
		}
		cur = get(t, s, attrOf(prev[0], "href"))
		if cur.status != 200 {
			t.Fatalf("older page: %d", cur.status)
		}
		all = append(cur.bodies(), all...)
	}
	var msgs []string
	for _, b := range all {
		if strings.HasPrefix(b, "msg ") {
			msgs = append(msgs, b)
		}
	}
	if len(msgs) != n {
		t.Fatalf("paging back found %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m != fmt.Sprintf("msg %03d", i) {
			t.Fatalf("message %d is %q: pages overlap or skip", i, m)
		}
	}
	var forward []string
	for pages = 0; ; pages++ {
		forward = append(forward, cur.bodies()...)
		next := cur.find("link", "rel", "next")
		if len(next) == 0 || pages > 10 {
			break
		}
		href := attrOf(next[0], "href")
		if href == link {
			break // back at the live page
		}
		cur = get(t, s, href)
	}
	msgs = msgs[:0]
	for _, b := range forward {
		if strings.HasPrefix(b, "msg ") {
			msgs = append(msgs, b)
		}
	}
	if len(msgs) != n || msgs[n-1] != fmt.Sprintf("msg %03d", n-1) {
		t.Fatalf("paging forward found %d messages", len(msgs))
	}

	for _, bad := range []string{"?before=nonsense", "?after=s-5", "?before=s1&after=s2"} {
		if p := get(t, s, link+bad); p.status != 400 {
			t.Errorf("%s: %d, want 400", bad, p.status)
		}
	}
	// A token from the future is clamped to now rather than failing.
	if p := get(t, s, link+"?before=s999999999"); p.status != 200 || len(p.bodies()) == 0 {
		t.Errorf("future token: %d", p.status)
	}
}

func TestEditsRepliesRedactionsAndPermalinks(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	room := alice.WorldReadableRoom(t)
	orig := alice.Send(t, room, "first draft")
	alice.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* final text",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "final text"},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": orig}})
	gone := alice.Send(t, room, "regrettable")
	alice.Must(t, 200, "PUT", hstest.Room(room)+"/redact/"+url.PathEscape(gone)+"/t1", map[string]any{})
	reply := alice.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "> quoted\n\nthe answer",
		"format": "org.matrix.custom.html", "formatted_body": "<mx-reply><blockquote>quoted</blockquote></mx-reply>the answer",
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": orig}}})

	p := get(t, s, "/room/"+url.PathEscape(room))
	b := p.bodies()
	if !contains(b, "final text") || contains(b, "first draft") || contains(b, "* final text") {
		t.Fatalf("edit not shown as the latest text only: %q", b)
	}
	if contains(b, "regrettable") || !contains(b, "Message deleted") {
		t.Fatalf("redaction not shown: %q", b)
	}
	if !contains(b, "the answer") || contains(b, "quoted the answer") {
		t.Fatalf("reply fallback not stripped: %q", b)
	}
	replyLi := p.find("li", "id", "ev-"+reply)
	if len(replyLi) != 1 || len(findIn(replyLi[0], "reply")) != 1 {
		t.Fatal("the reply does not link to what it answers")
	}
	perma := "/room/" + url.PathEscape(room) + "/event/" + url.PathEscape(orig)
	ev := get(t, s, perma)
	if ev.status != 200 {
		t.Fatalf("permalink: %d", ev.status)
	}
	focus := ev.withClass("li", "focus")
	if len(focus) != 1 || attrOf(focus[0], "id") != "ev-"+orig {
		t.Fatal("the permalink does not highlight its event")
	}
	if get(t, s, "/room/"+url.PathEscape(room)+"/event/"+url.PathEscape("$unknown")).status != 404 {
		t.Fatal("an unknown event's permalink is not 404")
	}
}

func TestDirectoryListsWorldReadableRoomsAndSearches(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	readable := alice.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Gardening <b>club</b>",
		"initial_state": []map[string]any{{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})
	alice.CreateRoom(t, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Members only chat"})
	p := get(t, s, "/")
	if p.status != 200 {
		t.Fatalf("directory: %d", p.status)
	}
	names := map[string]bool{}
	for _, n := range p.withClass("span", "name") {
		names[text(n)] = true
	}
	if !names["Gardening <b>club</b>"] || names["Members only chat"] {
		t.Fatalf("directory shows %v", names)
	}
	if len(p.find("a", "href", "/room/"+url.PathEscape(readable))) != 1 {
		t.Fatal("no link to the room's page")
	}
	if q := get(t, s, "/?q=nothing-matches"); len(q.withClass("span", "name")) != 0 {
		t.Fatal("search did not filter")
	}
	if q := get(t, s, "/?q=garden"); len(q.withClass("span", "name")) != 1 {
		t.Fatal("search did not find the room")
	}
	if inputs := p.find("input", "name", "q"); len(inputs) != 1 || len(p.find("label", "for", "q")) != 1 {
		t.Fatal("the search box has no label")
	}
}

func TestEmbedOffersPostingOnlyWhereGuestsMayJoin(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	open := alice.WorldReadableRoom(t)
	closed := alice.CreateRoom(t, map[string]any{"preset": "public_chat",
		"initial_state": []map[string]any{{"type": "m.room.history_visibility", "content": map[string]string{"history_visibility": "world_readable"}}}})
	e := get(t, s, "/embed/"+url.PathEscape(open))
	if e.status != 200 || len(e.find("form", "id", "compose")) != 1 {
		t.Fatalf("embed of a can_join room: %d, no compose box", e.status)
	}
	if csp := e.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors *") {
		t.Fatalf("embed CSP %q", csp)
	}
	if c := get(t, s, "/embed/"+url.PathEscape(closed)); c.status != 200 || len(c.find("form", "id", "compose")) != 0 {
		t.Fatal("an embed offers posting in a room guests may not join")
	}

	off := hstest.New(t, func(c *config.Config) { c.Web.GuestPosting = "off"; c.Web.FrameAncestors = "https://blog.example" })
	bob := off.Register(t, "bob")
	r := bob.WorldReadableRoom(t)
	o := get(t, off, "/embed/"+url.PathEscape(r))
	if len(o.find("form", "id", "compose")) != 0 {
		t.Fatal("guest posting off, yet a compose box")
	}
	if csp := o.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors https://blog.example") {
		t.Fatalf("configured frame-ancestors not used: %q", csp)
	}
}

func TestCachedFirstPageFollowsTheRoom(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	room := alice.WorldReadableRoom(t)
	alice.Send(t, room, "one")
	link := "/room/" + url.PathEscape(room)
	if !contains(get(t, s, link).bodies(), "one") {
		t.Fatal("first render")
	}
	alice.Send(t, room, "two")
	if !contains(get(t, s, link).bodies(), "two") {
		t.Fatal("the cached page did not notice a new message")
	}
	// Making the room private again takes its page down at once.
	alice.SetState(t, room, "m.room.history_visibility", "", map[string]string{"history_visibility": "shared"})
	if p := get(t, s, link); p.status != 404 {
		t.Fatalf("after history became shared: %d", p.status)
	}
}

func TestWebPagesOffAndUnderAPath(t *testing.T) {
	off := hstest.New(t, func(c *config.Config) { c.Web.Enabled = "off" })
	if res, err := http.Get(off.URL + "/"); err != nil || res.StatusCode != 404 {
		t.Fatalf("web off: / answered %v %v", res.StatusCode, err)
	}
	under := hstest.New(t, func(c *config.Config) { c.Web.Path = "/web/" })
	alice := under.Register(t, "alice")
	room := alice.WorldReadableRoom(t)
	p := get(t, under, "/web/room/"+url.PathEscape(room))
	if p.status != 200 || len(p.find("link", "href", "/web/static/style.css")) != 1 {
		t.Fatalf("pages under /web/: %d", p.status)
	}
	if res, err := http.Get(under.URL + "/web/static/live.js"); err != nil || res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("static script: %v %v", res.StatusCode, err)
	}
}

func TestPageLoadsAreRateLimited(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) { c.RateLimit = "on"; c.Web.PagesPerSecond = 0.001; c.Web.PagesBurst = 3 })
	limited := false
	for range 5 {
		if p := get(t, s, "/"); p.status == 429 {
			limited = true
			if p.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if !limited {
		t.Fatal("no 429 after the burst")
	}
}

// BenchmarkRoomPage renders a room page of 100 messages over HTTP: from the cache (the room
// unchanged since the last render) and cold (an older page, rendered on every request). It
// reports the median and 99th percentile of the requests' latencies.
func BenchmarkRoomPage(b *testing.B) {
	s := hstest.New(b)
	alice := s.Register(b, "alice")
	room := alice.WorldReadableRoom(b)
	for i := range 250 {
		alice.Send(b, room, fmt.Sprintf("message %d with a little text in it, as people write", i))
	}
	link := s.URL + "/room/" + url.PathEscape(room)
	fetch := func(b *testing.B, u string) {
		res, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("%s: %d", u, res.StatusCode)
		}
	}
	var older string
	{
		res, _ := http.Get(link)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		doc, _ := html.Parse(strings.NewReader(string(body)))
		older = s.URL + attrOf(page{doc: doc}.find("link", "rel", "prev")[0], "href")
	}
	for name, u := range map[string]string{"cached": link, "cold": older} {
		b.Run(name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				fetch(b, u)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func TestCommentRoomsCreatedOnFirstVisit(t *testing.T) {
	s := hstest.New(t, func(c *config.Config) {
		c.Web.CommentRooms = "comments_"
		c.Web.CommentRoomsOwner = "@comments:localhost"
	})
	alias := "#comments_blog_first-post:" + s.Name
	e := get(t, s, "/embed/"+url.PathEscape(alias))
	if e.status != 200 || len(e.find("form", "id", "compose")) != 1 {
		t.Fatalf("first visit of a comment alias: %d, compose box %d", e.status, len(e.find("form", "id", "compose")))
	}
	roomID := attrOf(e.find("ol", "id", "timeline")[0], "data-room")
	// The room is a real one: resolvable, world-readable, open to guests, owned by the owner.
	g := s.Guest(t)
	if got := g.Must(t, 200, "GET", "directory/room/"+url.PathEscape(alias), nil).Get("room_id").String(); got != roomID {
		t.Fatalf("alias resolves to %s, the page showed %s", got, roomID)
	}
	g.Join(t, roomID)
	g.Send(t, roomID, "first comment")
	if got := g.Must(t, 200, "GET", hstest.Room(roomID)+"/state/m.room.create", nil).Get("creator").String(); got != "" && got != "@comments:localhost" {
		t.Fatalf("creator %s", got)
	}
	again := get(t, s, "/room/"+url.PathEscape(alias))
	if attrOf(again.find("ol", "id", "timeline")[0], "data-room") != roomID || !contains(again.bodies(), "first comment") {
		t.Fatal("a second visit did not find the same room")
	}
	for _, other := range []string{"#other_x:" + s.Name, "#comments_x:elsewhere.example", "#comments_:" + s.Name} {
		if p := get(t, s, "/embed/"+url.PathEscape(other)); p.status != 404 {
			t.Errorf("%s: %d, want 404 (not a comment alias of ours)", other, p.status)
		}
	}
}

func testPNG(t testing.TB, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestImagesShownOnlyFromVisibleEvents(t *testing.T) {
	s := hstest.New(t)
	alice := s.Register(t, "alice")
	upload := func() string {
		req, _ := http.NewRequest("POST", "/_matrix/media/v3/upload?filename=cat.png", bytes.NewReader(testPNG(t, 800, 600)))
		req.Header.Set("Content-Type", "image/png")
		r := alice.SendRequest(t, req)
		if r.Status != 200 {
			t.Fatalf("upload: %s", r)
		}
		return r.Get("content_uri").String()
	}
	room := alice.WorldReadableRoom(t)
	img := alice.SendEvent(t, room, "m.room.message", map[string]any{"msgtype": "m.image", "body": "cat.png", "url": upload()})
	txt := alice.Send(t, room, "just text")
	p := get(t, s, "/room/"+url.PathEscape(room))
	imgs := p.find("img", "", "")
	want := "/room/" + url.PathEscape(room) + "/event/" + url.PathEscape(img) + "/image"
	if len(imgs) != 1 || attrOf(imgs[0], "src") != want || attrOf(imgs[0], "alt") != "cat.png" {
		t.Fatalf("image message shown as %d img elements", len(imgs))
	}
	res, err := http.Get(s.URL + want)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "image/") || len(body) == 0 {
		t.Fatalf("the picture: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(body)); err != nil || cfg.Width > 640 || cfg.Height > 480 {
		t.Fatalf("not a thumbnail: %v %dx%d", err, cfg.Width, cfg.Height)
	}
	if !strings.Contains(res.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatal("the picture is served without a sandboxing CSP")
	}
	// Not an image, or not readable by anyone: nothing.
	private := alice.CreateRoom(t, map[string]any{"preset": "public_chat"})
	hidden := alice.SendEvent(t, private, "m.room.message", map[string]any{"msgtype": "m.image", "body": "secret.png", "url": upload()})
	for name, path := range map[string]string{
		"text event":      "/room/" + url.PathEscape(room) + "/event/" + url.PathEscape(txt) + "/image",
		"unreadable room": "/room/" + url.PathEscape(private) + "/event/" + url.PathEscape(hidden) + "/image",
		"event elsewhere": "/room/" + url.PathEscape(room) + "/event/" + url.PathEscape(hidden) + "/image",
		"malformed event": "/room/" + url.PathEscape(room) + "/event/nonsense/image",
	} {
		res, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", name, res.StatusCode)
		}
	}
}
