package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/matsteer/matsteer/engine"
	"github.com/matsteer/matsteer/internal/textstream"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
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
	cachedTokens     int // prompt tokens served from the prompt cache
	completionTokens int
}

// errClientGone marks a generation stopped because the client went away.
var errClientGone = errors.New("client disconnected")

// errShuttingDown answers requests that the server stops before they finish:
// queued requests, and running ones once the shutdown grace period is over.
// A stream that already started ends with a final chunk (finish_reason
// "length") and [DONE] instead; every other request gets this 503.
var errShuttingDown = &APIError{Status: http.StatusServiceUnavailable, Type: errOverloaded, Code: "server_shutting_down",
	Message: "the server is shutting down; retry on another server or later"}

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

// run executes j on the engine. start is called once the request leaves the
// queue for a sequence, before its prompt is evaluated (streaming handlers
// send their headers there); emit receives the generated text as it becomes
// final. Cancelling ctx (the client went away) or the end of the shutdown
// grace period stops the request and frees its sequence.
func (s *Server) run(ctx context.Context, j *job, start func() error, emit func(string) error) (outcome, error) {
	out := outcome{promptTokens: len(j.prompt)}
	req := engine.Request{Prompt: j.prompt, MaxTokens: j.maxTokens, Sampler: j.sampler}
	var rec *auditRecorder
	if j.steer != nil {
		iv, err := intervene.New(j.steer.entry.file, j.steer.opts, s.model, s.cat)
		if err != nil {
			return out, invalid("steering", "steering file %q: %v", j.steer.entry.name, err)
		}
		if s.audit != nil {
			rec = newAuditRecorder(s.model, j.id, j.steer.entry.name, iv.Attributes(), len(j.prompt))
			iv.SetAudit(rec.row)
		}
		req.Steering, req.SteeringKey = iv, j.steer.cacheKey()
		if rec != nil {
			// Audited requests see every steered row of their own prompt.
			req.SteeringKey = ""
		}
	}
	s.admitted.Add(1)
	if s.stopping.Err() != nil {
		s.cancelled.Add(1)
		return out, errShuttingDown
	}
	// The generation stops when the client goes away or when the server's
	// shutdown grace period is over.
	genCtx, cancelGen := context.WithCancel(ctx)
	defer cancelGen()
	stopAfter := context.AfterFunc(s.stopping, cancelGen)
	defer stopAfter()

	started := false
	var startErr error
	req.OnAdmit = func() error {
		started = true
		if err := start(); err != nil {
			startErr = err
			return err
		}
		return nil
	}
	text := textstream.NewStream(j.stops)
	var emitErr error
	send := func(t string) error {
		if t == "" {
			return nil
		}
		if err := emit(t); err != nil {
			emitErr = err
			return err
		}
		return nil
	}
	t0 := time.Now()
	res, err := s.eng.Generate(genCtx, req, func(_ llama.Token, piece string) error {
		t, hit := text.Push(piece)
		if err := send(t); err != nil {
			return err
		}
		if hit {
			return llama.ErrStop
		}
		return nil
	})
	if rec != nil && started {
		s.audit.commit(rec.buf.Bytes())
	}
	out.completionTokens = res.GeneratedTokens
	out.cachedTokens = res.CachedTokens
	switch {
	case errors.Is(err, engine.ErrQueueFull):
		s.rejected.Add(1)
		st := s.eng.Stats()
		return out, &APIError{Status: http.StatusServiceUnavailable, Type: errOverloaded, Code: "queue_full",
			Message: fmt.Sprintf("server busy: all %d sequences are generating and the queue of %d waiting requests is full; retry later", st.Parallel, st.QueueLimit)}
	case ctx.Err() != nil || emitErr != nil || startErr != nil:
		s.cancelled.Add(1)
		s.log.Info("generation cancelled", "id", j.id, "generated", res.GeneratedTokens)
		return out, errClientGone
	case errors.Is(err, engine.ErrClosed) || (err != nil && genCtx.Err() != nil):
		s.cancelled.Add(1)
		if !started {
			return out, errShuttingDown
		}
		// Shutdown: what was generated is final; the caller ends a started
		// stream properly.
		s.log.Warn("generation stopped by shutdown", "id", j.id, "generated", res.GeneratedTokens)
		out.finish = "length"
		if send(text.Flush()) != nil {
			return out, errClientGone
		}
		return out, errShuttingDown
	case err != nil:
		s.failed.Add(1)
		return out, fmt.Errorf("generation failed: %w", err)
	}
	stopped := text.Stopped()
	// The held-back text is final now; an incomplete character at the end
	// is dropped, never sent as U+FFFD.
	if err := send(text.Flush()); err != nil {
		s.cancelled.Add(1)
		return out, errClientGone
	}
	switch {
	case stopped || res.StopReason == "eog":
		out.finish = "stop"
	default: // max_tokens, context_full
		out.finish = "length"
	}
	s.completed.Add(1)
	steerName := ""
	if j.steer != nil {
		steerName = j.steer.entry.name
	}
	s.log.Info("request", "id", j.id, "endpoint", j.endpoint, "steering", steerName,
		"prompt_tokens", out.promptTokens, "cached_tokens", out.cachedTokens, "completion_tokens", out.completionTokens,
		"finish", out.finish, "queued", res.Queued.Round(time.Millisecond).String(), "duration", time.Since(t0).Round(time.Millisecond).String())
	return out, nil
}
