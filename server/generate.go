package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steering"
)

// job is one validated generation request.
type job struct {
	id        string
	endpoint  string
	prompt    []llama.Token
	maxTokens int
	sampler   llama.SamplerParams
	stops     []string
	steer     *steeringChoice // nil: unsteered
}

// outcome summarises a finished generation.
type outcome struct {
	finish           string // "stop" or "length"
	promptTokens     int
	completionTokens int
}

// errClientGone marks a generation stopped because the client went away.
var errClientGone = errors.New("client disconnected")

// checkLength validates the prompt and max_tokens against the context and
// sets j.maxTokens (absent: the rest of the context).
func (s *Server) checkLength(j *job, maxTokens *int, param string) error {
	n := len(j.prompt)
	if n == 0 {
		return invalid("", "the prompt is empty after tokenization")
	}
	if n >= s.nCtx {
		return &APIError{Status: http.StatusBadRequest, Type: errInvalidRequest, Param: "messages", Code: "context_length_exceeded",
			Message: fmt.Sprintf("the prompt is %d tokens, but the context length is %d tokens; shorten the prompt", n, s.nCtx)}
	}
	room := s.nCtx - n
	if maxTokens == nil {
		j.maxTokens = room
		return nil
	}
	m := *maxTokens
	switch {
	case m < 1:
		return invalid(param, "%s must be at least 1, got %d", param, m)
	case m > s.nCtx:
		return &APIError{Status: http.StatusBadRequest, Type: errInvalidRequest, Param: param, Code: "context_length_exceeded",
			Message: fmt.Sprintf("%s=%d is larger than the context length of %d tokens", param, m, s.nCtx)}
	case m > room:
		return &APIError{Status: http.StatusBadRequest, Type: errInvalidRequest, Param: param, Code: "context_length_exceeded",
			Message: fmt.Sprintf("the context length is %d tokens, but %d were requested (%d in the prompt, %d to generate); lower %s or shorten the prompt", s.nCtx, n+m, n, m, param)}
	}
	j.maxTokens = m
	return nil
}

// run executes j on a free slot. start is called once the slot is held,
// before the prompt is evaluated (streaming handlers send their headers
// there); emit receives the generated text as it becomes final. Cancelling
// ctx (the client went away, or the server shuts down) stops generation and
// frees the slot.
func (s *Server) run(ctx context.Context, j *job, start func() error, emit func(string) error) (outcome, error) {
	out := outcome{promptTokens: len(j.prompt)}
	var iv *steering.Intervention
	var rec *auditRecorder
	if j.steer != nil {
		var err error
		iv, err = steering.New(j.steer.entry.file, j.steer.opts, s.model, s.cat)
		if err != nil {
			return out, invalid("steering", "steering file %q: %v", j.steer.entry.name, err)
		}
		if s.audit != nil {
			rec = newAuditRecorder(s.model, j.id, j.steer.entry.name, iv.Attributes(), len(j.prompt))
			iv.SetAudit(rec.row)
		}
	}
	sl, err := s.acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			s.cancelled.Add(1)
			return out, errClientGone
		}
		return out, err
	}
	defer s.release(sl)
	if iv != nil {
		if err := steering.Install(sl.hooks, iv); err != nil {
			s.failed.Add(1)
			return out, fmt.Errorf("installing steering file %q: %w", j.steer.entry.name, err)
		}
	}
	if rec != nil {
		defer func() { s.audit.commit(rec.buf.Bytes()) }()
	}
	if err := start(); err != nil {
		s.cancelled.Add(1)
		return out, errClientGone
	}

	var dec utf8Decoder
	stops := stopMatcher{stops: j.stops}
	stopped := false
	var emitErr error
	send := func(text string) error {
		if text == "" {
			return nil
		}
		if err := emit(text); err != nil {
			emitErr = err
			return err
		}
		return nil
	}
	// Cancelling ctx aborts the decode; Generate waits for a started abort
	// before it returns, so none can reach the slot's next request.
	t0 := time.Now()
	st, err := sl.ctx.Generate(ctx, j.prompt, llama.GenerateOptions{MaxTokens: j.maxTokens, Sampler: j.sampler},
		func(_ llama.Token, piece string) error {
			text, hit := stops.push(dec.push(piece))
			if err := send(text); err != nil {
				return err
			}
			if hit {
				stopped = true
				return llama.ErrStop
			}
			return nil
		})
	out.completionTokens = st.GeneratedTokens
	switch {
	case ctx.Err() != nil || emitErr != nil:
		s.cancelled.Add(1)
		s.log.Info("generation cancelled", "id", j.id, "slot", sl.id, "generated", st.GeneratedTokens)
		return out, errClientGone
	case err != nil:
		s.failed.Add(1)
		return out, fmt.Errorf("generation failed on slot %d: %w", sl.id, err)
	}
	if !stopped {
		// The held-back text is final now; a stop sequence cannot start in
		// an incomplete character, so flushing the decoder last is safe.
		text, hit := stops.push(dec.flush())
		if hit {
			stopped = true
		} else {
			text += stops.flush()
		}
		if err := send(text); err != nil {
			s.cancelled.Add(1)
			return out, errClientGone
		}
	}
	switch {
	case stopped || st.StopReason == "eog":
		out.finish = "stop"
	default: // max_tokens, context_full
		out.finish = "length"
	}
	s.completed.Add(1)
	steerName := ""
	if j.steer != nil {
		steerName = j.steer.entry.name
	}
	s.log.Info("request", "id", j.id, "endpoint", j.endpoint, "slot", sl.id, "steering", steerName,
		"prompt_tokens", out.promptTokens, "completion_tokens", out.completionTokens, "finish", out.finish,
		"duration", time.Since(t0).Round(time.Millisecond).String())
	return out, nil
}
