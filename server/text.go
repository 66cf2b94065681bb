package server

import (
	"strings"
	"unicode/utf8"
)

// utf8Decoder turns a stream of token pieces (byte strings that may split a
// UTF-8 character between tokens) into valid UTF-8 text. An incomplete
// character at the end is held back until the next piece; every invalid
// byte becomes U+FFFD. The output does not depend on how the bytes are split
// into pieces, so streamed deltas concatenate to the non-streamed text.
type utf8Decoder struct {
	pending []byte
}

// push adds a piece and returns the text that is now complete.
func (d *utf8Decoder) push(piece string) string {
	d.pending = append(d.pending, piece...)
	var b strings.Builder
	i := 0
	for i < len(d.pending) {
		rest := d.pending[i:]
		if !utf8.FullRune(rest) {
			break // an incomplete character: wait for more bytes
		}
		r, n := utf8.DecodeRune(rest)
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.Write(rest[:n])
		}
		i += n
	}
	d.pending = append(d.pending[:0], d.pending[i:]...)
	return b.String()
}

// flush returns what is held back, each byte of an incomplete character as
// U+FFFD.
func (d *utf8Decoder) flush() string {
	s := strings.Repeat(string(utf8.RuneError), len(d.pending))
	d.pending = d.pending[:0]
	return s
}

// stopMatcher finds stop sequences in streamed text. Text that might be the
// start of a stop sequence is held back until it is known not to be.
type stopMatcher struct {
	stops   []string
	pending string
}

// push adds text and returns the text that can be emitted, and whether a stop
// sequence was found (the returned text then ends just before it, and the
// rest is dropped).
func (m *stopMatcher) push(text string) (string, bool) {
	if len(m.stops) == 0 {
		return text, false
	}
	m.pending += text
	first := -1
	for _, s := range m.stops {
		if i := strings.Index(m.pending, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		out := m.pending[:first]
		m.pending = ""
		return out, true
	}
	keep := 0
	for _, s := range m.stops {
		keep = max(keep, overlap(m.pending, s))
	}
	out := m.pending[:len(m.pending)-keep]
	m.pending = m.pending[len(m.pending)-keep:]
	return out, false
}

// flush returns the held-back text.
func (m *stopMatcher) flush() string {
	s := m.pending
	m.pending = ""
	return s
}

// overlap is the length of the longest proper prefix of stop that text ends
// with.
func overlap(text, stop string) int {
	for n := min(len(text), len(stop)-1); n > 0; n-- {
		if strings.HasSuffix(text, stop[:n]) {
			return n
		}
	}
	return 0
}
