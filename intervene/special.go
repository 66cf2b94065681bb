package intervene

import (
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

// SpecialTokensOf returns the classification of m's vocabulary for
// Scaffold (llama.Model.TokenKinds, computed once per model).
func SpecialTokensOf(m *llama.Model) *SpecialTokens {
	k := m.TokenKinds()
	s := &SpecialTokens{control: k.Control, newline: k.Newline, bos: -1}
	if sp := m.Special(); sp.AddBOS {
		s.bos = sp.BOS
	}
	return s
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
