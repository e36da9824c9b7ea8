package client

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"porthole/internal/auth"
	"porthole/internal/httpx"
	"porthole/internal/media"
	"porthole/internal/mxerr"
)

// SetMedia gives the API the content repository. Call before serving.
func (a *API) SetMedia(m *media.Service) { a.media = m }

// uploadReadTimeout replaces the server's read timeout for an upload's body: 50 MB take
// minutes on a slow link.
const uploadReadTimeout = 15 * time.Minute

// mediaConfig serves GET /media/config.
func (a *API) mediaConfig(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
	return httpx.WriteJSON(w, 200, map[string]int64{"m.upload.size": a.media.UploadSize()})
}

// createMedia serves POST /_matrix/media/v1/create.
func (a *API) createMedia(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	uri, expires, err := a.media.Create(r.Context(), s.UserID)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, map[string]any{"content_uri": uri, "unused_expires_at": expires})
}

// upload serves POST /_matrix/media/v3/upload and, with a server name and media ID from
// POST /create, PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (a *API) upload(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout))
	filename, _ := query(r, "filename")
	u := media.Upload{
		UserID: s.UserID, ServerName: r.PathValue("serverName"), MediaID: r.PathValue("mediaId"),
		ContentType: r.Header.Get("Content-Type"), Filename: filename, Length: r.ContentLength, Body: r.Body,
	}
	async := r.Method == http.MethodPut
	if async && u.MediaID == "" {
		return mxerr.NotFound("Unknown media ID")
	}
	uri, err := a.media.Upload(r.Context(), u)
	if err != nil {
		return err
	}
	if async {
		return httpx.WriteJSON(w, 200, struct{}{})
	}
	return httpx.WriteJSON(w, 200, map[string]string{"content_uri": uri})
}

// mediaParams are the query parameters of downloads and thumbnails.
func mediaParams(r *http.Request, legacy bool) (media.GetOptions, error) {
	o := media.GetOptions{Wait: media.DefaultWait, Legacy: legacy, AllowRemote: true}
	if raw, ok := query(r, "timeout_ms"); ok {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			return o, mxerr.InvalidParam("timeout_ms must be a non-negative integer")
		}
		o.Wait = time.Duration(min(n, media.MaxWait.Milliseconds())) * time.Millisecond
	}
	// This server never redirects downloads, so allow_redirect only needs to be valid.
	if _, err := boolParam(r, "allow_redirect"); err != nil {
		return o, err
	}
	if legacy {
		if raw, ok := query(r, "allow_remote"); ok && raw != "" {
			allow, err := boolParam(r, "allow_remote")
			if err != nil {
				return o, err
			}
			o.AllowRemote = allow
		}
	}
	return o, nil
}

// setDownloadHeaders sets what every download and thumbnail answer carries, errors
// included: a sandboxing Content-Security-Policy, Cross-Origin-Resource-Policy so that web
// clients may embed media, and no sniffing, referrers or indexing.
func setDownloadHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", media.ContentSecurityPolicy)
	h.Set("X-Content-Security-Policy", "sandbox;")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex")
}

// download serves GET /media/download/{serverName}/{mediaId}[/{fileName}]: the
// authenticated endpoint (legacy false) and the deprecated unauthenticated one.
func (a *API) download(legacy bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
		setDownloadHeaders(w)
		o, err := mediaParams(r, legacy)
		if err != nil {
			return err
		}
		m, err := a.media.Get(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), o)
		if err != nil {
			return err
		}
		content, err := a.media.Open(r.Context(), m.SHA256)
		if err != nil {
			return err
		}
		defer content.Close()
		name := m.UploadName
		if fn := r.PathValue("fileName"); fn != "" {
			name = fn
		}
		serveMedia(w, r, media.ServedType(m.ContentType), media.Disposition(m.ContentType, name), m.SHA256, m.UploadedTS, content)
		return nil
	}
}

// serveMedia streams content with its headers; http.ServeContent answers Range and
// conditional requests.
func serveMedia(w http.ResponseWriter, r *http.Request, contentType, disposition, sha string, modifiedMS int64, content interface {
	Read([]byte) (int, error)
	Seek(int64, int) (int64, error)
}) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", disposition)
	// Media never change: clients keep them a day; shared caches must ask again, so that
	// authenticated media are not served from a cache to whoever asks.
	h.Set("Cache-Control", "public, max-age=86400, s-maxage=0, proxy-revalidate")
	h.Set("ETag", `"`+sha+`"`)
	http.ServeContent(w, r, "", time.UnixMilli(modifiedMS), content)
}

// thumbnail serves GET /media/thumbnail/{serverName}/{mediaId}?width=&height=&method=
// (authenticated, and the deprecated unauthenticated endpoint).
func (a *API) thumbnail(legacy bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *auth.Session) error {
		setDownloadHeaders(w)
		o, err := mediaParams(r, legacy)
		if err != nil {
			return err
		}
		req := media.ThumbnailRequest{Method: media.Scale}
		for name, dst := range map[string]*int{"width": &req.Width, "height": &req.Height} {
			raw, ok := query(r, name)
			if !ok {
				return mxerr.MissingParam("Missing integer query parameter " + strconv.Quote(name))
			}
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > media.MaxThumbnailDimension {
				return mxerr.InvalidParam(fmt.Sprintf("Query parameter %q must be an integer between 1 and %d", name, media.MaxThumbnailDimension))
			}
			*dst = n
		}
		if m, ok := query(r, "method"); ok {
			if m != media.Crop && m != media.Scale {
				return mxerr.InvalidParam(`Query parameter "method" must be crop or scale`)
			}
			req.Method = m
		}
		if req.Animated, err = boolParam(r, "animated"); err != nil {
			return err
		}
		th, err := a.media.Thumbnail(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), req, o)
		if err != nil {
			return err
		}
		content, err := a.media.Open(r.Context(), th.SHA256)
		if err != nil {
			return err
		}
		defer content.Close()
		serveMedia(w, r, th.ContentType, "inline; filename=thumbnail"+thumbnailExt[th.ContentType], th.SHA256, th.ModifiedTS, content)
		return nil
	}
}

// thumbnailExt names the thumbnail file of each type a thumbnail may have.
var thumbnailExt = map[string]string{"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}

// previewURL serves GET /media/preview_url?url=&ts= (404 M_UNRECOGNIZED when previews are
// off, as Synapse).
func (a *API) previewURL(w http.ResponseWriter, r *http.Request, s *auth.Session) error {
	if !a.media.URLPreviewEnabled() {
		return mxerr.Unrecognized("URL previews are disabled")
	}
	raw, ok := query(r, "url")
	if !ok || raw == "" {
		return mxerr.MissingParam("Missing string query parameter \"url\"")
	}
	if ts, ok := query(r, "ts"); ok {
		if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
			return mxerr.InvalidParam("ts must be an integer")
		}
	}
	og, err := a.media.Preview(r.Context(), s.UserID, raw)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, 200, og)
}
