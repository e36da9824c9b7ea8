// Package httpx adapts error-returning handlers to net/http: it writes Matrix error bodies,
// decodes JSON bodies with a size limit, and wraps every request with CORS headers, a request
// ID and one log line.
package httpx

import (
	"context"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"porthole/internal/mxerr"
)

// Handler is an HTTP handler that returns its error instead of writing it.
type Handler func(w http.ResponseWriter, r *http.Request) error

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return mxerr.Internal(err)
	}
	WriteBytes(w, status, body)
	return nil
}

// Header values shared by every response (never modified).
var (
	jsonType    = []string{"application/json"}
	corsOrigin  = []string{"*"}
	corsMethods = []string{"GET, HEAD, POST, PUT, DELETE, OPTIONS"}
	corsHeaders = []string{"X-Requested-With, Content-Type, Authorization, Date"}
)

// WriteBytes writes an already-encoded JSON body.
func WriteBytes(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	// Canonical keys assigned directly: this runs for every long-poll answer.
	h["Content-Type"] = jsonType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// WriteError writes err as a Matrix error and returns the status written. Errors that
// are not *mxerr.Error become 500 M_UNKNOWN without their internal text.
func WriteError(w http.ResponseWriter, r *http.Request, err error) int {
	e, ok := mxerr.As(err)
	if !ok {
		if errors.Is(err, context.Canceled) {
			// Nobody is listening; 499 is only for the log line.
			return 499
		}
		e = mxerr.Internal(err)
	}
	body, mErr := json.Marshal(e.Body())
	if mErr != nil {
		body = []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
	}
	WriteBytes(w, e.Status, body)
	return e.Status
}

// ReadJSON decodes a JSON object request body into v. The body is limited to maxBytes
// (413 M_TOO_LARGE); bytes that are not JSON are 400 M_NOT_JSON; JSON that is not an object
// or does not fit v is 400 M_BAD_JSON. Invalid UTF-8 and duplicate keys are rejected.
func ReadJSON(r *http.Request, maxBytes int64, v any) error {
	body, err := ReadBody(r, maxBytes)
	if err != nil {
		return err
	}
	return DecodeObject(body, v)
}

// ReadBody reads the whole body, at most maxBytes.
func ReadBody(r *http.Request, maxBytes int64) ([]byte, error) {
	if r.ContentLength > maxBytes {
		return nil, mxerr.TooLarge("Request body too large")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBytes+1))
	if err != nil {
		return nil, mxerr.Unknown("Could not read request body").With(err)
	}
	if int64(len(body)) > maxBytes {
		return nil, mxerr.TooLarge("Request body too large")
	}
	return body, nil
}

// DecodeObject checks that body is a JSON object and decodes it into v.
func DecodeObject(body []byte, v any) error {
	val := jsontext.Value(body)
	if !val.IsValid() {
		return mxerr.NotJSON("Content not JSON.")
	}
	if val.Kind() != '{' {
		return mxerr.BadJSON("Content must be a JSON object.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return mxerr.BadJSON(describe(err)).With(err)
	}
	return nil
}

// describe turns a decoding error into a short message naming the field.
func describe(err error) string {
	var se *json.SemanticError
	if errors.As(err, &se) {
		where := string(se.JSONPointer)
		if where == "" {
			where = "body"
		}
		if se.JSONKind != 0 {
			return "Invalid type at " + where + ": got " + se.JSONKind.String()
		}
		return "Invalid value at " + where
	}
	return "Invalid JSON"
}

// statusWriter records the status for the log line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type ctxKey int

const (
	requestIDKey ctxKey = iota
	logAttrsKey
)

// LogAttrs lets a handler add attributes (such as the user) to the request's log line.
type LogAttrs struct{ attrs []slog.Attr }

// AddLogAttr adds an attribute to the request's log line.
func AddLogAttr(ctx context.Context, a slog.Attr) {
	if la, ok := ctx.Value(logAttrsKey).(*LogAttrs); ok {
		la.attrs = append(la.attrs, a)
	}
}

var requestCounter atomic.Uint64

// Observer is told about every finished request (for metrics).
type Observer func(route string, status int, d time.Duration)

// Middleware adds CORS headers, answers OPTIONS preflights, assigns a request ID and logs
// one line per request. route names the matched pattern for the log line.
func Middleware(log *slog.Logger, route func(*http.Request) string, observe Observer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := w.Header()
		h["Access-Control-Allow-Origin"] = corsOrigin
		h["Access-Control-Allow-Methods"] = corsMethods
		h["Access-Control-Allow-Headers"] = corsHeaders
		if r.Method == http.MethodOptions {
			WriteBytes(w, http.StatusOK, []byte("{}"))
			return
		}
		id := strconv.FormatUint(requestCounter.Add(1), 36)
		la := &LogAttrs{}
		ctx := context.WithValue(context.WithValue(r.Context(), requestIDKey, id), logAttrsKey, la)
		sw := &statusWriter{ResponseWriter: w}
		// The mux records the matched pattern on the request it is given.
		r = r.WithContext(ctx)
		next.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = 499
		}
		d := time.Since(start)
		name := route(r)
		if observe != nil {
			observe(name, status, d)
		}
		level := slog.LevelInfo
		if status >= 500 && status != 499 {
			level = slog.LevelError
		}
		if log.Enabled(ctx, level) {
			attrs := append([]slog.Attr{
				slog.String("req", id), slog.String("method", r.Method), slog.String("route", name),
				slog.Int("status", status), slog.Duration("dur", d), slog.String("remote", r.RemoteAddr),
			}, la.attrs...)
			log.LogAttrs(ctx, level, "request", attrs...)
		}
	})
}

// DecodeValue decodes one JSON value into v.
func DecodeValue(raw []byte, v any) error { return json.Unmarshal(raw, v) }
