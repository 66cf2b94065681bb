package intervene

import (
	"strings"
	"sync"

	"github.com/matsteer/matsteer/llama"
)

// Special tokens and chat-template scaffolding.
//
// A chat-formatted prompt holds rows no attribute is about: control tokens
// ("<|im_start|>", "<|im_end|>", "<start_of_turn>", ...) and the template's
// role headers that follow them ("user", "assistant" and the newline that
// ends the header). Steering vectors are trained on dataset text, which has
// none of them, so a gate is free to open there (in the demo the formality
// gate opens at 0.8-1.0 on "<|im_start|>", "user", "assistant"). By default
// an Intervention leaves such rows unsteered and package extract keeps them
// out of training rows; [steer.ApplyOptions.SteerSpecial] and
// extract.Options.KeepSpecial turn this off.
//
// The rule (Scaffold) is per sequence, in position order: a control token
// is skipped; after a control token, the following tokens are skipped up
// to and including the first whose text holds a newline,
// at most MaxHeaderTokens of them (the role header: "user\n" after
// "<|im_start|>", "\n" after "<|im_end|>", "model\n" after
// "<start_of_turn>", "assistant" and "\n\n" around Llama 3's header
// tokens). The exception is the BOS the tokenizer adds (the BOS token at
// position 0 of a model that adds one): it is skipped, but the text after
// it is ordinary text. (A model whose BOS is also its turn marker and that
// adds none, like SmolLM2's "<|im_start|>", gets the header rule there.)

// MaxHeaderTokens bounds the tokens after a control token that count as
// its header when no newline comes first.
const MaxHeaderTokens = 6

// SpecialTokens classifies a model's vocabulary for Scaffold.
type SpecialTokens struct {
	control []bool      // llama.cpp renders the token only as special text
	newline []bool      // the token's text holds '\n'
	bos     llama.Token // the BOS the tokenizer adds (-1: none)
}

type specialKey struct {
	m      *llama.Model
	path   string
	nVocab int
}

var specialCache sync.Map // specialKey -> *SpecialTokens

// SpecialTokensOf returns the classification of m's vocabulary (computed
// once per model: two detokenizations of each control-token candidate). A
// control token is one whose text is empty unless special tokens are
// rendered (llama.cpp's CONTROL attribute: BOS, EOS, chat-turn markers).
func SpecialTokensOf(m *llama.Model) *SpecialTokens {
	key := specialKey{m: m, path: m.Path(), nVocab: m.NVocab()}
	if s, ok := specialCache.Load(key); ok {
		return s.(*SpecialTokens)
	}
	n := m.NVocab()
	sp := m.Special()
	s := &SpecialTokens{control: make([]bool, n), newline: make([]bool, n), bos: -1}
	if sp.AddBOS {
		s.bos = sp.BOS
	}
	one := make([]llama.Token, 1)
	for t := 0; t < n; t++ {
		one[0] = llama.Token(t)
		plain := m.Detokenize(one, false, false)
		if plain == "" {
			s.control[t] = m.Detokenize(one, false, true) != ""
			continue
		}
		s.newline[t] = strings.Contains(plain, "\n")
	}
	v, _ := specialCache.LoadOrStore(key, s)
	return v.(*SpecialTokens)
}

// IsControl reports whether tok is a control token (false for ids outside
// the vocabulary).
func (s *SpecialTokens) IsControl(tok llama.Token) bool {
	return tok >= 0 && int(tok) < len(s.control) && s.control[tok]
}

// Scaffold tracks one sequence's position in the rule above. Its zero
// value is a sequence at its start. Feed it the sequence's tokens in
// position order; a gap in the positions (a sequence continued from
// cached state, or restarted) starts it afresh at that token.
type Scaffold struct {
	next   int // the position expected next (0: fresh)
	header int // tokens of a header still allowed
}

// Skip reports whether the token tok at position pos is a control token or
// template scaffolding, and advances the state.
func (sc *Scaffold) Skip(s *SpecialTokens, tok llama.Token, pos int) bool {
	if pos != sc.next || pos == 0 {
		sc.header = 0
	}
	sc.next = pos + 1
	if s.IsControl(tok) {
		if pos != 0 || tok != s.bos {
			sc.header = MaxHeaderTokens
		}
		return true
	}
	if sc.header == 0 {
		return false
	}
	sc.header--
	if tok >= 0 && int(tok) < len(s.newline) && s.newline[tok] {
		sc.header = 0
	}
	return true
}
