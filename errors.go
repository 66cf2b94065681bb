package matsteer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/matsteer/matsteer/engine"
)

// Errors a caller can test for with errors.Is. Each one is also carried by
// a typed error with the details (errors.As): ModelNotFoundError,
// WidthError, AttributeError and ContextError.
var (
	// ErrModelNotFound: the model file (or the cached default model) does
	// not exist.
	ErrModelNotFound = errors.New("model not found")
	// ErrWrongWidth: a steering file or activation rows are not as wide
	// as the model's hook site (n_embd).
	ErrWrongWidth = errors.New("steering file width does not match the model")
	// ErrUnknownAttribute: a strength names an attribute that none of the
	// steering files has.
	ErrUnknownAttribute = errors.New("unknown attribute")
	// ErrContextFull: the prompt (or, when scoring, prompt plus
	// continuation) does not fit the context.
	ErrContextFull = errors.New("context full")
	// ErrQueueFull: more callers are waiting for a sequence than
	// Options.Queue allows (the engine's own error value).
	ErrQueueFull = engine.ErrQueueFull
	// ErrClosed: the Model was closed (the engine's own error value).
	ErrClosed = engine.ErrClosed
)

// ModelNotFoundError reports a missing model file. It matches
// ErrModelNotFound.
type ModelNotFoundError struct {
	Path    string // the path tried
	Default bool   // the path is the default model's place in the cache
	Err     error  // the underlying error (fs.ErrNotExist)
}

func (e *ModelNotFoundError) Error() string {
	if e.Default {
		return fmt.Sprintf("model not found: the default model is not in the cache (%s); run `matsteer model pull` (or `make model`), or give a GGUF path", e.Path)
	}
	return fmt.Sprintf("model not found: %s", e.Path)
}

// Is makes errors.Is(err, ErrModelNotFound) true.
func (e *ModelNotFoundError) Is(target error) bool { return target == ErrModelNotFound }

// Unwrap returns the underlying error.
func (e *ModelNotFoundError) Unwrap() error { return e.Err }

// WidthError reports a steering file (or activations) whose rows are not as
// wide as the model's. It matches ErrWrongWidth.
type WidthError struct {
	What  string // e.g. "steering file steer.gguf"
	Got   int    // the file's width
	Model int    // the model's n_embd
}

func (e *WidthError) Error() string {
	return fmt.Sprintf("%s has rows of %d values, but the model's are %d wide (it was made for another model)", e.What, e.Got, e.Model)
}

// Is makes errors.Is(err, ErrWrongWidth) true.
func (e *WidthError) Is(target error) bool { return target == ErrWrongWidth }

// AttributeError reports strengths for attributes that no steering file of
// the call has. It matches ErrUnknownAttribute.
type AttributeError struct {
	Names []string // the unknown names, sorted
	Have  []string // the attributes of the call's steering files
}

func (e *AttributeError) Error() string {
	have := "none: no steering file given"
	if len(e.Have) > 0 {
		have = strings.Join(e.Have, ", ")
	}
	return fmt.Sprintf("unknown attribute(s) %s (the steering files have %s)", strings.Join(e.Names, ", "), have)
}

// Is makes errors.Is(err, ErrUnknownAttribute) true.
func (e *AttributeError) Is(target error) bool { return target == ErrUnknownAttribute }

// ContextError reports a prompt that does not fit the context. It matches
// ErrContextFull.
type ContextError struct {
	Tokens int // tokens needed (prompt, plus the continuation when scoring)
	NCtx   int // the context length
}

func (e *ContextError) Error() string {
	return fmt.Sprintf("context full: %d tokens do not fit the context of %d tokens (shorten the prompt or raise Options.NCtx)", e.Tokens, e.NCtx)
}

// Is makes errors.Is(err, ErrContextFull) true.
func (e *ContextError) Is(target error) bool { return target == ErrContextFull }
