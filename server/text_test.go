package server

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// split cuts s into random pieces.
func split(rng *rand.Rand, s string) []string {
	var out []string
	for len(s) > 0 {
		n := 1 + rng.IntN(min(len(s), 5))
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

func TestUTF8DecoderIgnoresPieceBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	inputs := []string{
		"plain ascii",
		"héllo wörld — ✓ 😀",
		"bad \xff\xfe bytes \xe2\x82 cut \xf0\x9f\x98", // invalid and truncated sequences
		"\xe2\x82\xac\xe2\x82",                         // ends inside a character
		"\xc3(\xa0\xa1 \xed\xa0\x80",                   // invalid continuations, a surrogate
	}
	for _, in := range inputs {
		want := replaceInvalid([]byte(in))
		for trial := 0; trial < 50; trial++ {
			var d utf8Decoder
			var b strings.Builder
			for _, p := range split(rng, in) {
				b.WriteString(d.push(p))
			}
			b.WriteString(d.flush())
			if b.String() != want {
				t.Fatalf("%q: got %q, want %q", in, b.String(), want)
			}
		}
	}
}

func TestStopMatcher(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		text  string
		stops []string
		want  string
		hit   bool
	}{
		{"hello world", []string{"wor"}, "hello ", true},
		{"hello world", []string{"xyz"}, "hello world", false},
		{"hello world", []string{"world!"}, "hello world", false}, // a prefix at the very end is released
		{"aaab", []string{"aab"}, "a", true},
		{"abcabd", []string{"abd", "cab"}, "ab", true}, // the earliest match wins
		{"ünïcödé stop", []string{"ö"}, "ünïc", true},
		{"no stops", nil, "no stops", false},
	}
	for _, c := range cases {
		for trial := 0; trial < 30; trial++ {
			m := stopMatcher{stops: c.stops}
			var b strings.Builder
			hit := false
			for _, p := range split(rng, c.text) {
				out, h := m.push(p)
				b.WriteString(out)
				if h {
					hit = true
					break
				}
			}
			if !hit {
				b.WriteString(m.flush())
			}
			if b.String() != c.want || hit != c.hit {
				t.Fatalf("%q stops %q: got %q hit %v, want %q hit %v", c.text, c.stops, b.String(), hit, c.want, c.hit)
			}
		}
	}
}
