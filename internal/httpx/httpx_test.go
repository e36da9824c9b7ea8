package httpx

import (
	"net/http/httptest"
	"strings"
	"testing"

	"porthole/internal/mxerr"
)

func TestDecodeObject(t *testing.T) {
	var v struct {
		N int    `json:"n"`
		S string `json:"s"`
	}
	cases := map[string]string{
		`{"n":1,"s":"x"}`: "",
		`{`:               "M_NOT_JSON",
		"\xff":            "M_NOT_JSON",
		`{"s":"\xff"}`:    "M_NOT_JSON",
		`{"n":1,"n":2}`:   "M_NOT_JSON",
		`[1]`:             "M_BAD_JSON",
		`"str"`:           "M_BAD_JSON",
		`{"n":"1"}`:       "M_BAD_JSON",
		`{"n":1.5}`:       "M_BAD_JSON",
		`{"n":1e400}`:     "M_BAD_JSON",
		strings.Repeat("[", 20000) + strings.Repeat("]", 20000): "M_NOT_JSON",
	}
	for in, code := range cases {
		err := DecodeObject([]byte(in), &v)
		if code == "" {
			if err != nil {
				t.Errorf("%q: %v", in, err)
			}
			continue
		}
		e, ok := mxerr.As(err)
		if !ok || e.Code != code || e.Status != 400 {
			t.Errorf("%.40q: got %v, want %s", in, err, code)
		}
	}
}

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 101)))
	if _, err := ReadBody(r, 100); err == nil {
		t.Fatal("oversized body accepted")
	} else if e, _ := mxerr.As(err); e.Status != 413 || e.Code != "M_TOO_LARGE" {
		t.Fatalf("got %v", err)
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader("{}"))
	if b, err := ReadBody(r, 100); err != nil || string(b) != "{}" {
		t.Fatalf("%s %v", b, err)
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":null}]}`, `[]`, `{"a":1e999}`, "{\"a\":\"\xff\"}", `{"a":1,"a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v map[string]any
		err := DecodeObject(data, &v)
		if err == nil {
			return
		}
		e, ok := mxerr.As(err)
		if !ok || e.Status != 400 || (e.Code != "M_NOT_JSON" && e.Code != "M_BAD_JSON") {
			t.Fatalf("%q: %v", data, err)
		}
	})
}
