package specschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Violation is one place where a response breaks the spec's schema.
type Violation struct {
	Method, Path string
	Status       int
	// Template is the spec's path template of the endpoint ("" when the spec has none).
	Template string
	// Pointer is the JSON pointer of the offending value in the response body.
	Pointer string
	// Problem is the schema's complaint; Schema is the keyword that made it.
	Problem, Schema string
	// EventType is the type of the innermost event around Pointer, if any, and RoomEvent
	// says whether that event has an event ID (not an EDU or account data).
	EventType string
	RoomEvent bool
}

func (v Violation) String() string {
	tmpl := v.Template
	if tmpl == "" {
		tmpl = "(no spec endpoint)"
	}
	ptr := v.Pointer
	if ptr == "" {
		ptr = "/"
	}
	return fmt.Sprintf("%s %s → %d (spec %s): at %s: %s [%s]", v.Method, v.Path, v.Status, tmpl, ptr, v.Problem, v.Schema)
}

// CheckResponse validates one response. rawPath is the request's escaped path without
// the query. It returns nothing for responses outside the Matrix API or with no JSON
// schema in the spec, and nothing that the allowlist excuses.
func (s *Spec) CheckResponse(method, rawPath string, status int, body []byte) []Violation {
	if status == 0 || !(strings.HasPrefix(rawPath, "/_matrix/client/") || strings.HasPrefix(rawPath, "/_matrix/media/") ||
		strings.HasPrefix(rawPath, "/.well-known/matrix/")) {
		return nil
	}
	if status >= 300 && status < 400 {
		return nil // redirects (and 304 Not Modified) carry no JSON body in the spec
	}
	if status == 206 {
		return nil // a part of a download, answering a Range request (HTTP, not the spec)
	}
	ep := s.match(method, rawPath)
	c := checker{spec: s, method: method, path: rawPath, status: status}
	if ep != nil {
		c.template = ep.template
	}
	loc, listed := ep.response(status)
	if status < 300 && ((listed && loc == "") || (ep == nil && !json.Valid(body))) {
		return nil // a body the spec does not describe as JSON (media downloads, say)
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		c.add("", "the body is not JSON: "+err.Error(), "")
		return c.filtered(nil)
	}

	switch {
	case status >= 400:
		c.checkError(doc, loc)
	case ep == nil:
		// An endpoint the spec does not have (Porthole's or Synapse's extras): nothing to check.
	case !listed:
		c.add("", fmt.Sprintf("status %d is not a response of this endpoint in the spec", status), "")
	case loc != "":
		c.validate(loc, doc, "")
	}
	if status < 300 {
		c.checkEvents(doc, "")
	}
	return c.filtered(doc)
}

func (ep *endpoint) response(status int) (string, bool) {
	if ep == nil {
		return "", false
	}
	loc, ok := ep.responses[status]
	return loc, ok
}

type checker struct {
	spec         *Spec
	method, path string
	template     string
	status       int
	out          []Violation
}

func (c *checker) add(ptr, problem, schema string) {
	c.out = append(c.out, Violation{Method: c.method, Path: c.path, Status: c.status, Template: c.template, Pointer: ptr, Problem: problem, Schema: schema})
}

func (c *checker) filtered(doc any) []Violation {
	var out []Violation
	for _, v := range c.out {
		v.EventType, v.RoomEvent = eventAt(doc, v.Pointer)
		if !allowed(v) {
			out = append(out, v)
		}
	}
	return out
}

// checkError validates an error answer: against the schema the spec lists for this status
// (a UIA 401, say), or else against the generic error body every endpoint may answer with.
func (c *checker) checkError(doc any, listed string) {
	generic := baseURL + errorFile
	if c.status == 429 {
		generic = baseURL + limitsFile
	}
	m, isErr := doc.(map[string]any)
	if isErr {
		_, isErr = m["errcode"]
	}
	if listed == "" {
		c.validate(generic, doc, "")
		return
	}
	if isErr && c.errorsOf(generic, doc, "") == nil {
		return // every endpoint may answer with a plain Matrix error
	}
	c.validate(listed, doc, "")
}

// validate adds the violations of doc (found at ptr in the body) against the schema at loc.
func (c *checker) validate(loc string, doc any, ptr string) {
	for _, v := range c.errorsOf(loc, doc, ptr) {
		c.out = append(c.out, v)
	}
}

func (c *checker) errorsOf(loc string, doc any, ptr string) []Violation {
	sch, err := c.spec.schema(loc)
	if err != nil {
		return []Violation{{Method: c.method, Path: c.path, Status: c.status, Template: c.template, Pointer: ptr,
			Problem: "the spec's schema does not compile: " + err.Error(), Schema: loc}}
	}
	err = sch.Validate(doc)
	if err == nil {
		return nil
	}
	verr, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return []Violation{{Method: c.method, Path: c.path, Status: c.status, Template: c.template, Pointer: ptr, Problem: err.Error(), Schema: loc}}
	}
	var out []Violation
	seen := map[string]bool{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, cause := range e.Causes {
				walk(cause)
			}
			return
		}
		at := pointer(e.InstanceLocation)
		msg := e.ErrorKind.LocalizedString(printer)
		if seen[at+"\x00"+msg] {
			return
		}
		seen[at+"\x00"+msg] = true
		out = append(out, Violation{Method: c.method, Path: c.path, Status: c.status, Template: c.template,
			Pointer: ptr + at, Problem: msg, Schema: shortSchema(e.SchemaURL, e.ErrorKind.KeywordPath())})
	}
	walk(verr)
	if len(out) == 0 { // never let a failed validation pass for want of a leaf
		out = append(out, Violation{Method: c.method, Path: c.path, Status: c.status, Template: c.template, Pointer: ptr, Problem: verr.Error(), Schema: loc})
	}
	return out
}

var printer = message.NewPrinter(language.English)

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteString("/" + escape(t))
	}
	return b.String()
}

// shortSchema drops the embedded files' URL prefix from a keyword location.
func shortSchema(loc string, keyword []string) string {
	return strings.TrimPrefix(loc, baseURL+root) + pointer(keyword)
}

// checkEvents finds every event in the body (an object with a string type and an object
// content, outside any event's content) and validates it against its type's event schema.
func (c *checker) checkEvents(v any, ptr string) {
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			c.checkEvents(e, fmt.Sprintf("%s/%d", ptr, i))
		}
	case map[string]any:
		typ, isType := v["type"].(string)
		_, hasContent := v["content"].(map[string]any)
		if isType && hasContent {
			c.checkEvent(typ, v, ptr)
		}
		for k, e := range v {
			if k == "content" && isType {
				continue // what a sender put in content is theirs
			}
			c.checkEvents(e, ptr+"/"+escape(k))
		}
	}
}

// envelope is what a room event's schema requires but some answers leave out on purpose:
// the room ID in /sync, and everything but type, state_key, sender and content in
// stripped state (with origin_server_ts in a space hierarchy's children_state). The endpoint's own schema checks the envelope; this checks the type.
var envelope = map[string]any{
	"room_id":          "!implied:example.org",
	"event_id":         "$implied",
	"origin_server_ts": json.Number("0"),
}

func (c *checker) checkEvent(typ string, ev map[string]any, ptr string) {
	file, ok := c.spec.eventTypes[typ]
	if !ok {
		return
	}
	if unsigned, ok := ev["unsigned"].(map[string]any); ok && unsigned["redacted_because"] != nil {
		return // redaction strips the content that the type's schema describes
	}
	full := make(map[string]any, len(ev)+3)
	for k, e := range ev {
		full[k] = e
	}
	// Without an event ID the event is stripped state (space hierarchies' children add
	// origin_server_ts to it).
	_, hasID := ev["event_id"]
	stripped := !hasID
	for k, e := range envelope {
		if _, ok := full[k]; !ok && (k == "room_id" || stripped) {
			full[k] = e
		}
	}
	c.validate(baseURL+file, full, ptr)
	if typ == "m.room.message" {
		if content, _ := ev["content"].(map[string]any); content != nil {
			if mt, ok := content["msgtype"].(string); ok {
				if variant, ok := c.spec.eventTypes[typ+"$"+mt]; ok {
					c.validate(baseURL+variant, full, ptr)
				}
			}
		}
	}
}

// eventAt finds the innermost event (an object with a string type and an object content)
// on the way to ptr: its type, and whether it has an event ID.
func eventAt(doc any, ptr string) (typ string, hasID bool) {
	for _, tok := range append([]string{""}, strings.Split(strings.TrimPrefix(ptr, "/"), "/")...) {
		if tok != "" {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch v := doc.(type) {
			case map[string]any:
				doc = v[tok]
			case []any:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(v) {
					return typ, hasID
				}
				doc = v[i]
			default:
				return typ, hasID
			}
		}
		if m, ok := doc.(map[string]any); ok {
			if t, ok := m["type"].(string); ok {
				if _, ok := m["content"].(map[string]any); ok {
					_, hasID = m["event_id"]
					typ = t
				}
			}
		}
	}
	return typ, hasID
}

// CheckAppServiceTransaction validates the body of a transaction the homeserver sends an
// application service (PUT /_matrix/app/v1/transactions/{txnId}): the spec's request
// schema, and the schema of every event in it.
func (s *Spec) CheckAppServiceTransaction(body []byte) []Violation {
	const loc = baseURL + root + "api/application-service/transactions.yaml#/paths/~1transactions~1%7BtxnId%7D/put/requestBody/content/application~1json/schema"
	c := checker{spec: s, method: "PUT", path: "/_matrix/app/v1/transactions/{txnId}", status: 200, template: "/_matrix/app/v1/transactions/{txnId}"}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		c.add("", "the body is not JSON: "+err.Error(), "")
		return c.filtered(nil)
	}
	c.validate(loc, doc, "")
	c.checkEvents(doc, "")
	return c.filtered(doc)
}
