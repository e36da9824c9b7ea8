package media

import (
	"mime"
	"slices"
)

// inlineTypes are the content types a download may be shown inline by a browser (the
// spec's list, which is Synapse's and Element's): no HTML, no SVG, nothing that runs
// script. Everything else is served as an attachment.
var inlineTypes = []string{
	"text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
	"image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
	"video/mp4", "video/webm", "video/ogg", "video/quicktime",
	"audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
	"audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
}

// textTypes get "; charset=UTF-8" when they were uploaded without a charset (as Synapse).
var textTypes = []string{
	"text/css", "text/csv", "text/html", "text/calendar", "text/plain", "text/javascript",
	"application/json", "application/ld+json", "application/rtf", "image/svg+xml", "text/xml",
}

// ServedType is the Content-Type a download is served with.
func ServedType(contentType string) string {
	if contentType == "" {
		return "application/octet-stream"
	}
	base, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "application/octet-stream"
	}
	if _, has := params["charset"]; !has && slices.Contains(textTypes, base) {
		params["charset"] = "UTF-8"
		return mime.FormatMediaType(base, params)
	}
	return contentType
}

// Disposition is the Content-Disposition of a download: inline only for the safe types,
// with the filename (when there is one) as a token, a quoted string, or RFC 5987's
// filename*=utf-8”… for anything beyond printable ASCII (RFC 6266).
func Disposition(contentType, filename string) string {
	kind := "attachment"
	if slices.Contains(inlineTypes, baseType(contentType)) {
		kind = "inline"
	}
	if filename == "" {
		return kind
	}
	if d := mime.FormatMediaType(kind, map[string]string{"filename": filename}); d != "" {
		return d
	}
	return kind
}

// ContentSecurityPolicy is sent with every download (the spec's recommended policy, with
// media-src as Synapse sends it).
const ContentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
