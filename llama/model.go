package llama

/*
#include <stdlib.h>
#include "llama.h"
#include "rpc.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unsafe"

	"github.com/matsteer/matsteer/internal/safefile"
)

// ModelParams control how a model is loaded.
type ModelParams struct {
	// GPULayers is the number of layers offloaded to the GPUs and RPC
	// servers (-1: all), counted from the last layer down, as llama.cpp
	// does. It has no effect without a GPU or RPC server.
	GPULayers int
	// RPC lists llama.cpp rpc-server endpoints (HOST:PORT, see
	// ParseRPCServers) that hold offloaded layers, split between them (and
	// any local GPU) in proportion to the memory they report. Each is
	// checked with CheckRPCServer before loading.
	RPC []string
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
	// VocabOnly loads only the vocabulary (tokenizing without weights).
	VocabOnly bool
}

// Model is a loaded GGUF model. It is safe to share between goroutines and
// contexts; Close it after every context made from it is closed.
type Model struct {
	c     *C.struct_llama_model
	vocab *C.struct_llama_vocab
	path  string

	eogOnce sync.Once
	eog     []Token

	kindsOnce sync.Once
	kinds     TokenKinds

	rpc       []string
	placement Placement
}

// ErrNotGGUF is returned (wrapped) for files that are not GGUF models.
var ErrNotGGUF = errors.New("not a GGUF file")

// LoadModel loads a GGUF model file.
func LoadModel(path string, p ModelParams) (*Model, error) {
	if err := checkGGUFFile(path); err != nil {
		return nil, err
	}
	initBackend()
	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(p.GPULayers)
	if p.NoMmap {
		mp.load_mode = C.LLAMA_LOAD_MODE_NONE
	}
	mp.vocab_only = C.bool(p.VocabOnly)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var m *C.struct_llama_model
	rpc, place, err := withDevices(p, &mp, func() error {
		m = C.matsteer_model_load(cpath, mp)
		if m == nil {
			return errors.New("llama.cpp could not load it")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	model := newModel(m, path)
	model.rpc, model.placement = rpc, place(model.NLayer())
	return model, nil
}

// withDevices runs load (which calls llama.cpp to load a model with mp)
// with the devices p asks for: RPC servers are checked and counted as in
// use, and the layer placement llama.cpp logs is captured. On error
// llama.cpp's logged errors are attached.
func withDevices(p ModelParams, mp *C.struct_llama_model_params, load func() error) ([]string, func(int) Placement, error) {
	var rpc []string
	if len(p.RPC) > 0 {
		var err error
		if rpc, err = ParseRPCServers(strings.Join(p.RPC, ",")); err != nil {
			return nil, nil, err
		}
		if err := rpcAcquire(rpc); err != nil {
			return nil, nil, err
		}
	}
	finish := capturePlacement()
	devs, labels, err := deviceList(rpc)
	if err != nil {
		finish(-1, nil)
		rpcRelease(rpc)
		return nil, nil, err
	}
	if devs != nil {
		defer C.free(unsafe.Pointer(devs))
		mp.devices = devs
	}
	takeLogErrors()
	if err := load(); err != nil {
		finish(-1, nil)
		rpcRelease(rpc)
		if msg := takeLogErrors(); msg != "" {
			return nil, nil, errors.New(msg)
		}
		return nil, nil, err
	}
	return rpc, func(nLayer int) Placement { return finish(nLayer, labels) }, nil
}

func newModel(m *C.struct_llama_model, path string) *Model {
	return &Model{c: m, vocab: C.llama_model_get_vocab(m), path: path}
}

// checkGGUFFile gives clear errors for missing, empty and non-GGUF files
// before llama.cpp sees them. Only regular files are accepted (a FIFO or a
// device is refused without blocking; models are mapped, so there is no size
// limit), and the error for a wrong magic never shows the file's bytes.
func checkGGUFFile(path string) error {
	f, st, err := safefile.Open(path, safefile.Unlimited)
	if err != nil {
		if errors.Is(err, safefile.ErrNotRegular) {
			return fmt.Errorf("load model: %w (want a .gguf file)", err)
		}
		return fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return fmt.Errorf("load model %s: file is too short (%d bytes): %w", path, st.Size(), ErrNotGGUF)
	}
	if string(magic[:]) != "GGUF" {
		return fmt.Errorf("load model %s: bad magic: %w", path, ErrNotGGUF)
	}
	return nil
}

// Close frees the model. It is safe to call more than once.
func (m *Model) Close() {
	if m == nil || m.c == nil {
		return
	}
	C.llama_model_free(m.c)
	m.c = nil
	m.vocab = nil
	rpcRelease(m.rpc)
	m.rpc = nil
}

// RPCServers lists the RPC servers the model's offloaded layers may use.
func (m *Model) RPCServers() []string { return append([]string(nil), m.rpc...) }

// Placement says which device holds each layer, as llama.cpp assigned them
// when the model was loaded.
func (m *Model) Placement() Placement { return m.placement }

// Path is the file the model was loaded from ("" for in-memory models).
func (m *Model) Path() string { return m.path }

// NLayer is the number of transformer blocks.
func (m *Model) NLayer() int { return int(C.llama_model_n_layer(m.c)) }

// NEmbd is the width of the residual stream.
func (m *Model) NEmbd() int { return int(C.llama_model_n_embd(m.c)) }

// NVocab is the vocabulary size.
func (m *Model) NVocab() int { return int(C.llama_vocab_n_tokens(m.vocab)) }

// NCtxTrain is the context length the model was trained with.
func (m *Model) NCtxTrain() int { return int(C.llama_model_n_ctx_train(m.c)) }

// NParams is the number of parameters.
func (m *Model) NParams() uint64 { return uint64(C.llama_model_n_params(m.c)) }

// SizeBytes is the total size of the model's tensors.
func (m *Model) SizeBytes() uint64 { return uint64(C.llama_model_size(m.c)) }

// Desc is llama.cpp's one-line description (architecture, size, type).
func (m *Model) Desc() string {
	buf := make([]byte, 256)
	n := C.llama_model_desc(m.c, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return string(buf[:min(int(n), len(buf)-1)])
}

// Meta returns the GGUF metadata value for key as a string.
func (m *Model) Meta(key string) (string, bool) {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	buf := make([]byte, 512)
	for {
		n := C.llama_model_meta_val_str(m.c, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		if n < 0 {
			return "", false
		}
		if int(n) < len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, int(n)+1)
	}
}

// MetaKeys lists every metadata key.
func (m *Model) MetaKeys() []string {
	n := int(C.llama_model_meta_count(m.c))
	keys := make([]string, 0, n)
	buf := make([]byte, 256)
	for i := 0; i < n; i++ {
		k := C.llama_model_meta_key_by_index(m.c, C.int32_t(i), (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		if k >= 0 {
			keys = append(keys, string(buf[:min(int(k), len(buf)-1)]))
		}
	}
	return keys
}

// Arch is the model architecture (general.architecture), e.g. "llama".
func (m *Model) Arch() string { s, _ := m.Meta("general.architecture"); return s }

// Name is general.name, or the file name when the model has none.
func (m *Model) Name() string {
	if s, ok := m.Meta("general.name"); ok && s != "" {
		return s
	}
	return m.path
}

// ChatTemplate is the model's default chat template ("" if none).
func (m *Model) ChatTemplate() string {
	t := C.llama_model_chat_template(m.c, nil)
	if t == nil {
		return ""
	}
	return C.GoString(t)
}

// SpecialTokens are the vocabulary's special token ids (-1 when absent).
type SpecialTokens struct {
	BOS, EOS, EOT, NL, PAD Token
	AddBOS, AddEOS         bool
}

// Special returns the special tokens.
func (m *Model) Special() SpecialTokens {
	return SpecialTokens{
		BOS:    Token(C.llama_vocab_bos(m.vocab)),
		EOS:    Token(C.llama_vocab_eos(m.vocab)),
		EOT:    Token(C.llama_vocab_eot(m.vocab)),
		NL:     Token(C.llama_vocab_nl(m.vocab)),
		PAD:    Token(C.llama_vocab_pad(m.vocab)),
		AddBOS: bool(C.llama_vocab_get_add_bos(m.vocab)),
		AddEOS: bool(C.llama_vocab_get_add_eos(m.vocab)),
	}
}

// IsEOG reports whether tok ends generation (EOS, EOT, ...).
func (m *Model) IsEOG(tok Token) bool { return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(tok))) }

// EOGTokens lists every token that ends generation (found once per model).
func (m *Model) EOGTokens() []Token {
	m.eogOnce.Do(func() {
		for t := 0; t < m.NVocab(); t++ {
			if m.IsEOG(Token(t)) {
				m.eog = append(m.eog, Token(t))
			}
		}
	})
	return m.eog
}

// TokenKinds classifies a model's vocabulary by how its tokens render.
type TokenKinds struct {
	// Control[t]: t renders only as special text (llama.cpp's CONTROL
	// attribute: BOS, EOS, chat-turn markers).
	Control []bool
	// Newline[t]: t's text holds a newline.
	Newline []bool
}

// TokenKinds returns the classification of the vocabulary, computed once
// per model (two detokenizations of each control-token candidate, one of
// every other token). The slices are shared: do not modify them.
func (m *Model) TokenKinds() TokenKinds {
	m.kindsOnce.Do(func() {
		n := m.NVocab()
		k := TokenKinds{Control: make([]bool, n), Newline: make([]bool, n)}
		one := make([]Token, 1)
		for t := 0; t < n; t++ {
			one[0] = Token(t)
			plain := m.Detokenize(one, false, false)
			if plain == "" {
				k.Control[t] = m.Detokenize(one, false, true) != ""
				continue
			}
			k.Newline[t] = strings.Contains(plain, "\n")
		}
		m.kinds = k
	})
	return m.kinds
}

// Tokenize converts text to tokens. addSpecial adds BOS/EOS as the model
// wants; parseSpecial lets special-token text (e.g. "<|im_start|>") map to
// the special tokens.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]Token, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	n := len(text) + 8
	for {
		toks := make([]Token, n)
		got := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(n), C.bool(addSpecial), C.bool(parseSpecial))
		if got >= 0 {
			return toks[:got], nil
		}
		if got == C.INT32_MIN {
			return nil, fmt.Errorf("tokenize: text of %d bytes is too long", len(text))
		}
		if int(-got) <= n {
			return nil, fmt.Errorf("tokenize: llama.cpp returned %d", int(got))
		}
		n = int(-got)
	}
}

// TokenPiece is the text of one token (special tokens rendered).
func (m *Model) TokenPiece(tok Token) string {
	var buf [256]byte
	n := C.llama_token_to_piece(m.vocab, C.llama_token(tok), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, true)
	if n < 0 {
		big := make([]byte, -n)
		n = C.llama_token_to_piece(m.vocab, C.llama_token(tok), (*C.char)(unsafe.Pointer(&big[0])), C.int32_t(len(big)), 0, true)
		if n < 0 {
			return ""
		}
		return string(big[:n])
	}
	return string(buf[:n])
}

// Detokenize converts tokens back to text.
func (m *Model) Detokenize(toks []Token, removeSpecial, unparseSpecial bool) string {
	if len(toks) == 0 {
		return ""
	}
	n := len(toks)*8 + 16
	for {
		buf := make([]byte, n)
		got := C.llama_detokenize(m.vocab, (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(len(toks)), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(n), C.bool(removeSpecial), C.bool(unparseSpecial))
		if got >= 0 {
			return string(buf[:got])
		}
		n = int(-got) + 1
	}
}

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// UserTurnTokens tokenizes prompt as one user message in the model's chat
// template followed by the start of the assistant's turn (control tokens
// parsed, BOS as the model wants): the tokens a chat reply follows.
func (m *Model) UserTurnTokens(prompt string) ([]Token, error) {
	text, err := m.ApplyChatTemplate("", []ChatMessage{{Role: "user", Content: prompt}}, true)
	if err != nil {
		return nil, err
	}
	return m.Tokenize(text, true, true)
}

// ApplyChatTemplate formats msgs with the model's chat template (or tmpl
// when non-empty). addAssistant appends the start of an assistant turn.
func (m *Model) ApplyChatTemplate(tmpl string, msgs []ChatMessage, addAssistant bool) (string, error) {
	if tmpl == "" {
		tmpl = m.ChatTemplate()
	}
	if tmpl == "" {
		return "", fmt.Errorf("apply chat template: model %s has no chat template", m.Name())
	}
	if len(msgs) == 0 {
		return "", fmt.Errorf("apply chat template: no messages")
	}
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))
	cmsgs := (*[1 << 20]C.struct_llama_chat_message)(C.malloc(C.size_t(len(msgs)) * C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{}))))[:len(msgs):len(msgs)]
	defer C.free(unsafe.Pointer(&cmsgs[0]))
	total := 0
	for i, msg := range msgs {
		cmsgs[i].role = C.CString(msg.Role)
		cmsgs[i].content = C.CString(msg.Content)
		total += len(msg.Role) + len(msg.Content)
	}
	defer func() {
		for i := range cmsgs {
			C.free(unsafe.Pointer(cmsgs[i].role))
			C.free(unsafe.Pointer(cmsgs[i].content))
		}
	}()
	n := 2*total + 256
	for {
		buf := (*C.char)(C.malloc(C.size_t(n)))
		got := C.llama_chat_apply_template(ctmpl, &cmsgs[0], C.size_t(len(msgs)), C.bool(addAssistant), buf, C.int32_t(n))
		if got < 0 {
			C.free(unsafe.Pointer(buf))
			return "", fmt.Errorf("apply chat template: template of model %s is not supported by llama.cpp's built-in template list", m.Name())
		}
		if int(got) <= n {
			s := C.GoStringN(buf, got)
			C.free(unsafe.Pointer(buf))
			return s, nil
		}
		C.free(unsafe.Pointer(buf))
		n = int(got) + 1
	}
}
