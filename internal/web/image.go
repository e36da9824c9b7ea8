package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"porthole/internal/media"
)

// imageWidth and imageHeight bound the picture a page shows for an image message: one of
// the sizes the media repository keeps thumbnails of.
const imageWidth, imageHeight = 640, 480

// image serves the picture of an image message: a thumbnail of its mxc:// content, for an
// event the anonymous reader may see. Media are otherwise served only to accounts (the
// authenticated media API); an image a world-readable room shows is public by the room's
// own choice, so the page may show it, and nothing else.
func (p *Pages) image(w http.ResponseWriter, r *http.Request) {
	fail := func(status int) {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, http.StatusText(status), status)
	}
	if p.media == nil {
		fail(http.StatusNotFound)
		return
	}
	ctx := r.Context()
	roomID, err := p.resolve(ctx, r.PathValue("room"))
	eventID := r.PathValue("eventId")
	if err != nil || len(eventID) < 2 || len(eventID) > 255 || eventID[0] != '$' {
		fail(http.StatusNotFound)
		return
	}
	raw, err := p.sync.Event(ctx, anonymous, roomID, eventID)
	if err != nil {
		fail(http.StatusNotFound)
		return
	}
	ev := gjson.ParseBytes(raw)
	c := ev.Get("content")
	if edit := ev.Get("unsigned.m\\.relations.m\\.replace"); edit.Get("sender").String() == ev.Get("sender").String() && edit.Get("content.m\\.new_content").IsObject() {
		c = edit.Get("content.m\\.new_content")
	}
	isImage := ev.Get("type").String() == "m.sticker" || (ev.Get("type").String() == "m.room.message" && c.Get("msgtype").String() == "m.image")
	server, mediaID, ok := strings.Cut(strings.TrimPrefix(c.Get("url").String(), "mxc://"), "/")
	if !isImage || !ok || !strings.HasPrefix(c.Get("url").String(), "mxc://") {
		fail(http.StatusNotFound)
		return
	}
	th, err := p.media.Thumbnail(ctx, server, mediaID, media.ThumbnailRequest{Width: imageWidth, Height: imageHeight, Method: media.Scale}, media.GetOptions{})
	if err != nil {
		fail(http.StatusNotFound)
		return
	}
	content, err := p.media.Open(ctx, th.SHA256)
	if err != nil {
		fail(http.StatusNotFound)
		return
	}
	defer content.Close()
	h := w.Header()
	h.Set("Content-Type", th.ContentType)
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "public, max-age=600")
	http.ServeContent(w, r, "", time.UnixMilli(th.ModifiedTS), content)
}
