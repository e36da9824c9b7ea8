// Package specschema checks Client-Server API responses against the Matrix specification's
// own schemas: the response schema of the endpoint (method, path template, status code) in
// the spec's OpenAPI files, and the event schema of every event the response carries. The
// test client (internal/hstest) runs every response through it, so a field that is null
// where the spec says string, a missing required field or a wrong type fails the test that
// received it.
//
// The schema files are a vendored, unmodified copy of the spec's (matrix-spec/, Apache-2.0),
// embedded so that the check runs the same in every checkout and CI layout and the
// contract's version changes only by a reviewed commit (scripts/update-spec-schemas.sh).
package specschema

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

//go:embed matrix-spec
var specFS embed.FS

// The embedded files are addressed as file:///matrix-spec/..., so that the schemas' relative
// $refs resolve between them.
const (
	root       = "matrix-spec/data/"
	baseURL    = "file:///"
	clientAPI  = root + "api/client-server/"
	eventDir   = root + "event-schemas/schema/"
	errorFile  = clientAPI + "definitions/errors/error.yaml"
	limitsFile = clientAPI + "definitions/errors/rate_limited.yaml"
)

// Spec is the loaded route table and a cache of compiled schemas.
type Spec struct {
	routes     []*endpoint
	eventTypes map[string]string // event type → schema file
	docs       *docCache

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
	failed   map[string]error
}

// endpoint is one method and path template of the spec with its response schemas.
type endpoint struct {
	method   string
	template string   // full path, e.g. /_matrix/client/v3/rooms/{roomId}/messages
	segments []string // template split at "/"
	literals int      // segments that are not parameters, for precedence
	// responses maps a status code to the location of its JSON schema ("" when the
	// response has no JSON body in the spec).
	responses map[int]string
}

var loadOnce = sync.OnceValues(load)

// Load returns the spec, loaded once per process.
func Load() (*Spec, error) { return loadOnce() }

func load() (*Spec, error) {
	docs := &docCache{docs: map[string]any{}}
	s := &Spec{docs: docs, eventTypes: map[string]string{}, compiled: map[string]*jsonschema.Schema{}, failed: map[string]error{}}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(docs)
	s.compiler = c

	files, err := fs.Glob(specFS, clientAPI+"*.yaml")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("specschema: no OpenAPI files embedded (%v)", err)
	}
	for _, f := range files {
		if err := s.addAPIFile(f); err != nil {
			return nil, err
		}
	}
	// Longest literal prefix first, so that /rooms/{roomId}/state beats /rooms/{roomId}/{x}.
	sort.SliceStable(s.routes, func(i, j int) bool { return s.routes[i].literals > s.routes[j].literals })

	events, err := fs.Glob(specFS, eventDir+"*.yaml")
	if err != nil {
		return nil, err
	}
	for _, f := range events {
		name := strings.TrimSuffix(path.Base(f), ".yaml")
		s.eventTypes[name] = f // "m.room.message$m.text" keys the msgtype variants
	}
	return s, nil
}

// addAPIFile adds the endpoints of one OpenAPI file.
func (s *Spec) addAPIFile(file string) error {
	doc, err := s.docs.read(file)
	if err != nil {
		return err
	}
	m, _ := doc.(map[string]any)
	base := basePath(m)
	paths, _ := m["paths"].(map[string]any)
	for tmpl, item := range paths {
		ops, _ := item.(map[string]any)
		for method, op := range ops {
			opm, ok := op.(map[string]any)
			if !ok || !isMethod(method) {
				continue
			}
			ep := &endpoint{method: strings.ToUpper(method), template: base + tmpl, responses: map[int]string{}}
			ep.segments = strings.Split(strings.TrimPrefix(ep.template, "/"), "/")
			for _, seg := range ep.segments {
				if !isParam(seg) {
					ep.literals++
				}
			}
			responses, _ := opm["responses"].(map[string]any)
			for code, resp := range responses {
				var status int
				if _, err := fmt.Sscanf(code, "%d", &status); err != nil {
					continue
				}
				loc := "/paths/" + escape(tmpl) + "/" + method + "/responses/" + code
				file, loc, resp := s.docs.follow(file, loc, resp)
				ep.responses[status] = ""
				if rm, ok := resp.(map[string]any); ok {
					if content, ok := rm["content"].(map[string]any); ok {
						if js, ok := content["application/json"].(map[string]any); ok && js["schema"] != nil {
							ep.responses[status] = baseURL + file + "#" + loc + "/content/application~1json/schema"
						}
					}
				}
			}
			s.routes = append(s.routes, ep)
		}
	}
	return nil
}

func basePath(doc map[string]any) string {
	servers, _ := doc["servers"].([]any)
	for _, sv := range servers {
		vars, _ := sv.(map[string]any)["variables"].(map[string]any)
		if bp, ok := vars["basePath"].(map[string]any); ok {
			if d, ok := bp["default"].(string); ok {
				return d
			}
		}
	}
	return "/_matrix/client/v3"
}

func isMethod(m string) bool {
	switch m {
	case "get", "put", "post", "delete", "patch", "head":
		return true
	}
	return false
}

func isParam(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }

// escape encodes one JSON pointer token.
func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// match finds the spec endpoint of a request. Old prefixes (r0, api/v1) are the v3 API.
func (s *Spec) match(method, rawPath string) *endpoint {
	p := rawPath
	for _, old := range []string{"/_matrix/client/r0/", "/_matrix/client/api/v1/"} {
		if strings.HasPrefix(p, old) {
			p = "/_matrix/client/v3/" + strings.TrimPrefix(p, old)
		}
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for _, ep := range s.routes {
		if ep.method != method || len(ep.segments) != len(segs) {
			continue
		}
		ok := true
		for i, seg := range ep.segments {
			// A parameter is never empty, but for the state key (the spec: "when an empty
			// string, the trailing slash on this endpoint is optional").
			if isParam(seg) && (segs[i] != "" || seg == "{stateKey}") {
				continue
			}
			if seg != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return ep
		}
	}
	return nil
}

// schema compiles (once) the schema at loc.
func (s *Spec) schema(loc string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.compiled[loc]; ok {
		return sch, nil
	}
	if err, ok := s.failed[loc]; ok {
		return nil, err
	}
	sch, err := s.compiler.Compile(loc)
	if err != nil {
		s.failed[loc] = err
		return nil, err
	}
	s.compiled[loc] = sch
	return sch, nil
}

// docCache reads the embedded YAML files as JSON values; it is also the compiler's loader.
type docCache struct {
	mu   sync.Mutex
	docs map[string]any
}

// Load implements jsonschema.URLLoader for file:///matrix-spec/... URLs.
func (d *docCache) Load(u string) (any, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "file" {
		return nil, fmt.Errorf("specschema: cannot load %q", u)
	}
	return d.read(strings.TrimPrefix(pu.Path, "/"))
}

func (d *docCache) read(file string) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if doc, ok := d.docs[file]; ok {
		return doc, nil
	}
	raw, err := specFS.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("specschema: %w", err)
	}
	var y any
	if err := yaml.Unmarshal(raw, &y); err != nil {
		return nil, fmt.Errorf("specschema: %s: %w", file, err)
	}
	// Through JSON, so that numbers become json.Number as the validator expects.
	js, err := json.Marshal(jsonValue(y))
	if err != nil {
		return nil, fmt.Errorf("specschema: %s: %w", file, err)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(js)))
	if err != nil {
		return nil, err
	}
	d.docs[file] = doc
	return doc, nil
}

// jsonValue turns YAML's map[any]any into JSON-shaped maps.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonValue(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonValue(e)
		}
		return v
	}
	return v
}

// follow resolves an OpenAPI reference object ({"$ref": "file#/pointer"}) found at
// file#loc, returning where the referenced object lives and the object itself.
func (d *docCache) follow(file, loc string, v any) (string, string, any) {
	for range 8 {
		m, ok := v.(map[string]any)
		if !ok {
			return file, loc, v
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return file, loc, v
		}
		target, frag, _ := strings.Cut(ref, "#")
		if target != "" {
			file = path.Clean(path.Join(path.Dir(file), target))
		}
		loc = frag
		doc, err := d.read(file)
		if err != nil {
			return file, loc, nil
		}
		v = lookup(doc, frag)
	}
	return file, loc, v
}

// lookup walks a JSON pointer.
func lookup(doc any, ptr string) any {
	if ptr == "" {
		return doc
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[tok]
	}
	return doc
}
