// Package textstream turns the byte pieces of generated tokens into text
// that is safe to show or send piece by piece.
//
// A token's piece may end inside a multi-byte UTF-8 character (byte-level
// vocabularies split characters between tokens). [Decoder] holds such a tail
// back until the character completes, and drops it if the stream ends first,
// so no chunk and no final text ends in U+FFFD replacement characters made
// from half a character. [StopMatcher] finds stop sequences in the decoded
// text, holding back text that may be the start of one; because it sees only
// whole characters, a stop sequence never matches part of a character.
// [Stream] combines the two, in the order a generation loop needs.
//
// The output does not depend on how the bytes are split into pieces: the
// chunks of a stream concatenate to the text of the same bytes pushed at
// once.
package textstream

import (
	"strings"
	"unicode/utf8"
)

// Decoder turns a stream of byte pieces into valid UTF-8 text. The zero
// value is ready to use.
//
// Bytes that can never be part of a valid character (a stray continuation
// byte, 0xff, a surrogate, an overlong form) become one U+FFFD each, as
// encoding/json does. An incomplete but so far valid character at the end of
// the input is held back (see [Decoder.Pending]) and dropped by
// [Decoder.Flush].
type Decoder struct {
	pending []byte
}

// Push adds a piece and returns the text that is now complete (possibly "").
func (d *Decoder) Push(piece string) string {
	if len(d.pending) == 0 && utf8.ValidString(piece) {
		return piece // the common case: no copy
	}
	d.pending = append(d.pending, piece...)
	var b strings.Builder
	i := 0
	for i < len(d.pending) {
		rest := d.pending[i:]
		if !utf8.FullRune(rest) {
			break // a valid prefix of a character: wait for more bytes
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

// Pending is the number of bytes held back: the start of a character not yet
// complete (at most 3).
func (d *Decoder) Pending() int { return len(d.pending) }

// Flush ends the stream: it drops the held-back bytes of an incomplete
// character and returns how many it dropped. Nothing held back is ever
// emitted, so Flush has no text to return. The decoder can then be reused.
func (d *Decoder) Flush() (dropped int) {
	n := len(d.pending)
	d.pending = d.pending[:0]
	return n
}

// StopMatcher finds the earliest of its stop sequences in streamed text.
// Text that might be the start of a stop sequence is held back until it is
// known not to be. Create it with the stop sequences; with none it passes
// text through.
type StopMatcher struct {
	stops   []string
	pending string
	stopped bool
}

// NewStopMatcher returns a matcher for stops (empty strings are ignored).
// A stop that is not valid UTF-8 has its invalid bytes replaced by U+FFFD,
// as the decoded text has: matches then always begin and end on character
// boundaries, and emitted text is never cut inside a character.
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, strings.ToValidUTF8(s, string(utf8.RuneError)))
		}
	}
	return m
}

// Push adds text and returns the text that can be emitted, and whether a
// stop sequence was found: the returned text then ends just before it, the
// rest is dropped, and later pushes return nothing.
func (m *StopMatcher) Push(text string) (string, bool) {
	if m.stopped {
		return "", true
	}
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
		m.stopped = true
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

// Flush ends the stream and returns the held-back text (it did not turn into
// a stop sequence, so it is final).
func (m *StopMatcher) Flush() string {
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

// Stream decodes token pieces and applies stop sequences: the text path of
// one generation. The zero value has no stop sequences.
type Stream struct {
	dec   Decoder
	stops *StopMatcher
	done  bool
}

// NewStream returns a stream that stops at the first of stops.
func NewStream(stops []string) *Stream { return &Stream{stops: NewStopMatcher(stops)} }

// Push adds a token's piece. It returns the text to emit now and whether a
// stop sequence was found (generation should end; the text then ends just
// before the stop sequence, and later pushes return nothing).
func (s *Stream) Push(piece string) (string, bool) {
	if s.done {
		return "", true
	}
	text := s.dec.Push(piece)
	if s.stops == nil {
		return text, false
	}
	out, hit := s.stops.Push(text)
	s.done = hit
	return out, hit
}

// Flush ends the stream (generation stopped for any other reason: end of
// generation, length, cancellation) and returns the last text to emit: what
// the stop matcher held back. An incomplete character at the end is dropped.
func (s *Stream) Flush() string {
	s.dec.Flush()
	if s.done || s.stops == nil {
		return ""
	}
	return s.stops.Flush()
}

// Stopped reports whether a stop sequence was found.
func (s *Stream) Stopped() bool { return s.done }

// Valid returns b as text the way a whole stream of it would be: invalid
// bytes as U+FFFD, an incomplete character at the end dropped.
func Valid(b []byte) string {
	var d Decoder
	return d.Push(string(b))
}
