package textstream

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
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

// TestDecoderIgnoresPieceBoundaries: any split of the bytes gives the same
// text; invalid bytes become U+FFFD, an incomplete character at the end is
// dropped, and no chunk is invalid UTF-8 or ends in a replacement made from
// part of a character.
func TestDecoderIgnoresPieceBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct{ in, want string }{
		{"plain ascii", "plain ascii"},
		{"héllo wörld — ✓ 😀", "héllo wörld — ✓ 😀"},
		{"bad \xff\xfe bytes \xe2\x82 cut \xf0\x9f\x98", "bad \uFFFD\uFFFD bytes \uFFFD\uFFFD cut "},
		{"\xe2\x82\xac\xe2\x82", "€"},                                            // ends inside a character: dropped
		{"ok \xf0\x9f\x98", "ok "},                                               // ends inside a 4-byte character
		{"\xc3(\xa0\xa1 \xed\xa0\x80", "\uFFFD(\uFFFD\uFFFD \uFFFD\uFFFD\uFFFD"}, // invalid continuations, a surrogate
		{"\xc3", ""},
	}
	for _, c := range cases {
		if got := Valid([]byte(c.in)); got != c.want {
			t.Fatalf("Valid(%q) = %q, want %q", c.in, got, c.want)
		}
		for trial := 0; trial < 50; trial++ {
			var d Decoder
			var b strings.Builder
			for _, p := range split(rng, c.in) {
				chunk := d.Push(p)
				if !utf8.ValidString(chunk) {
					t.Fatalf("%q: chunk %q is not valid UTF-8", c.in, chunk)
				}
				b.WriteString(chunk)
			}
			d.Flush()
			if b.String() != c.want {
				t.Fatalf("%q: got %q, want %q", c.in, b.String(), c.want)
			}
			if d.Pending() != 0 {
				t.Fatalf("pending after Flush")
			}
		}
	}
}

func TestDecoderPendingAndFlush(t *testing.T) {
	var d Decoder
	if got := d.Push("a\xe2\x82"); got != "a" || d.Pending() != 2 {
		t.Fatalf("got %q pending %d", got, d.Pending())
	}
	if got := d.Push("\xac!"); got != "€!" || d.Pending() != 0 {
		t.Fatalf("got %q pending %d", got, d.Pending())
	}
	d.Push("\xf0\x9f")
	if n := d.Flush(); n != 2 {
		t.Fatalf("dropped %d", n)
	}
	if got := d.Push("x"); got != "x" {
		t.Fatalf("after flush: %q", got)
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
		{"empty stop", []string{""}, "empty stop", false},
	}
	for _, c := range cases {
		for trial := 0; trial < 30; trial++ {
			m := NewStopMatcher(c.stops)
			var b strings.Builder
			hit := false
			for _, p := range split(rng, c.text) {
				out, h := m.Push(p)
				b.WriteString(out)
				if h {
					hit = true
					break
				}
			}
			if !hit {
				b.WriteString(m.Flush())
			}
			if b.String() != c.want || hit != c.hit {
				t.Fatalf("%q stops %q: got %q hit %v, want %q hit %v", c.text, c.stops, b.String(), hit, c.want, c.hit)
			}
		}
	}
}

// TestStreamStopNeverMatchesPartialCharacter: a generation that ends inside
// a character emits no U+FFFD, and a stop sequence of U+FFFD (or one ending
// in it) cannot match the cut character.
func TestStreamStopNeverMatchesPartialCharacter(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		in    string
		stops []string
		want  string
		hit   bool
	}{
		{"abc \xe2\x82", []string{"\uFFFD"}, "abc ", false},
		{"abc \xe2\x82", []string{" \uFFFD"}, "abc ", false},
		{"abc \xe2\x82", []string{"c \uFFFD\uFFFD"}, "abc ", false},
		{"abc €x", []string{"€"}, "abc ", true},
		{"a\xffb", []string{"\uFFFD"}, "a", true}, // a truly invalid byte is a character of its own
		{"é\xc3", []string{"é"}, "", true},
		{"ab\xf0\x9f\x98\x80", []string{"b😀"}, "a", true},
	} {
		for trial := 0; trial < 30; trial++ {
			s := NewStream(c.stops)
			var b strings.Builder
			hit := false
			for _, p := range split(rng, c.in) {
				out, h := s.Push(p)
				b.WriteString(out)
				if h {
					hit = true
					break
				}
			}
			b.WriteString(s.Flush())
			if b.String() != c.want || hit != c.hit || s.Stopped() != c.hit {
				t.Fatalf("%q stops %q: got %q hit %v, want %q hit %v", c.in, c.stops, b.String(), hit, c.want, c.hit)
			}
		}
	}
}

// FuzzStream checks the invariants on arbitrary bytes and splits: chunks are
// valid UTF-8, their concatenation does not depend on the split, and it never
// ends in U+FFFD made from an incomplete character.
func FuzzStream(f *testing.F) {
	f.Add([]byte("héllo \xe2\x82"), "llo", uint64(1))
	f.Add([]byte("\xf0\x9f\x98\x80\xff"), "\uFFFD", uint64(2))
	f.Add([]byte("\xff"), "\xbd", uint64(2)) // an invalid stop matched the tail of U+FFFD
	f.Fuzz(func(t *testing.T, in []byte, stop string, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 9))
		whole := NewStream([]string{stop})
		want, _ := whole.Push(string(in))
		want += whole.Flush()
		s := NewStream([]string{stop})
		var b strings.Builder
		for _, p := range split(rng, string(in)) {
			out, hit := s.Push(p)
			if !utf8.ValidString(out) {
				t.Fatalf("invalid chunk %q", out)
			}
			b.WriteString(out)
			if hit {
				break
			}
		}
		b.WriteString(s.Flush())
		if b.String() != want {
			t.Fatalf("split %q -> %q, whole -> %q", in, b.String(), want)
		}
		// A cut character at the end of valid text is dropped, not replaced.
		if utf8.Valid(in) {
			if got := Valid(append(append([]byte{}, in...), 0xe2, 0x82)); got != string(in) {
				t.Fatalf("cut character after %q gave %q", in, got)
			}
		}
	})
}
