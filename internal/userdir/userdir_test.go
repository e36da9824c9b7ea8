package userdir

import (
	"slices"
	"testing"
)

func str(s string) *string { return &s }

func TestWords(t *testing.T) {
	for _, c := range []struct {
		id   string
		name *string
		want []string
	}{
		{"@alice:example.org", nil, []string{"alice", "example", "org"}},
		{"@bob.smith:hs", str("Bob  SMITH!"), []string{"bob", "hs", "smith"}},
		{"@x:hs", str("Émile Zola"), []string{"hs", "x", "zola", "émile"}},
		{"@u:hs", str("ǆungla ①"), []string{"1", "džungla", "hs", "u"}}, // NFKC
		{"@u:hs", str("!!!"), []string{"hs", "u"}},
	} {
		if got := Words(c.id, c.name); !slices.Equal(got, c.want) {
			t.Errorf("Words(%q, %v) = %q, want %q", c.id, c.name, got, c.want)
		}
	}
	long := ""
	for i := 0; i < 100; i++ {
		long += "é"
	}
	if w := Words("@a:b", &long); len(w) != 3 || w[2] != long[:MaxWordLen] {
		t.Errorf("long word clipped badly: %q", w)
	}
	many := ""
	for i := 0; i < 100; i++ {
		many += string(rune('a'+i%26)) + string(rune('a'+i/26)) + " "
	}
	if n := len(Words("@a:b", &many)); n != MaxUserWords {
		t.Errorf("%d words kept", n)
	}
}

func TestQueryAndScore(t *testing.T) {
	if q := QueryWords("  Ali  SMI  ali "); !slices.Equal(q, []string{"ali", "smi"}) {
		t.Fatalf("query words %q", q)
	}
	if q := QueryWords("?!"); q != nil {
		t.Fatalf("no words expected: %q", q)
	}
	q := QueryWords("ali")
	exactName := Score(q, "@x:hs", str("Ali"), nil)
	prefixName := Score(q, "@x:hs", str("Alison"), nil)
	prefixID := Score(q, "@alison:hs", nil, nil)
	if !(exactName > prefixName && prefixName > prefixID && prefixID > 0) {
		t.Fatalf("ranking: %v %v %v", exactName, prefixName, prefixID)
	}
	if Score(q, "@bob:hs", str("Bob"), nil) != 0 {
		t.Fatal("a non-match scored")
	}
	if Score(QueryWords("ali smith"), "@alice:hs", str("Alice Jones"), nil) != 0 {
		t.Fatal("every word must match")
	}
	if Score(q, "@x:hs", str("Ali"), str("mxc://a/b")) <= exactName {
		t.Fatal("an avatar should count")
	}
	// Substrings that begin no word do not match.
	if Score(QueryWords("lic"), "@alice:hs", nil, nil) != 0 {
		t.Fatal("mid-word match")
	}
}
