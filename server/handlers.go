package server

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// Handler returns the HTTP handler with every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, methods map[string]http.HandlerFunc) {
		allow := make([]string, 0, len(methods))
		for m, h := range methods {
			mux.Handle(m+" "+path, h)
			allow = append(allow, m)
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, &APIError{Status: http.StatusMethodNotAllowed, Type: errInvalidRequest, Code: "method_not_allowed",
				Message: fmt.Sprintf("%s %s is not supported; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
		})
	}
	route("/v1/chat/completions", map[string]http.HandlerFunc{"POST": s.handleChat})
	route("/v1/completions", map[string]http.HandlerFunc{"POST": s.handleCompletion})
	route("/v1/models", map[string]http.HandlerFunc{"GET": s.handleModels})
	route("/v1/models/{id}", map[string]http.HandlerFunc{"GET": s.handleModel})
	route("/v1/steering", map[string]http.HandlerFunc{"GET": s.handleSteeringList, "POST": s.handleSteeringLoad})
	route("/v1/steering/{name}", map[string]http.HandlerFunc{"GET": s.handleSteeringGet, "DELETE": s.handleSteeringUnload})
	route("/health", map[string]http.HandlerFunc{"GET": s.handleHealth})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &APIError{Status: http.StatusNotFound, Type: errNotFound, Code: "unknown_url",
			Message: fmt.Sprintf("unknown endpoint %s %s", r.Method, r.URL.Path)})
	})
	return s.authenticate(mux)
}

// authenticate checks the API key on /v1 endpoints when one is configured.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.cfg.APIKey == "" {
		return next
	}
	want := []byte("Bearer " + s.cfg.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, &APIError{Status: http.StatusUnauthorized, Type: errAuthentication, Code: "invalid_api_key",
				Message: "missing or wrong API key: send it as \"Authorization: Bearer KEY\""})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type usage struct {
	PromptTokens        int                 `json:"prompt_tokens"`
	CompletionTokens    int                 `json:"completion_tokens"`
	TotalTokens         int                 `json:"total_tokens"`
	PromptTokensDetails promptTokensDetails `json:"prompt_tokens_details"`
}

// promptTokensDetails is OpenAI's breakdown of the prompt tokens: those
// served from the prompt cache.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func (o outcome) usage() *usage {
	return &usage{PromptTokens: o.promptTokens, CompletionTokens: o.completionTokens, TotalTokens: o.promptTokens + o.completionTokens,
		PromptTokensDetails: promptTokensDetails{CachedTokens: o.cachedTokens}}
}

// steeringEcho reports the steering a request ran with (the "steering"
// field of non-streamed responses).
type steeringEcho struct {
	File     string             `json:"file"`
	Global   float64            `json:"global"`
	Strength map[string]float64 `json:"strength"`
}

func echoSteering(c *steeringChoice) *steeringEcho {
	if c == nil {
		return nil
	}
	e := &steeringEcho{File: c.entry.name, Global: c.opts.Global, Strength: map[string]float64{}}
	for _, n := range c.entry.file.AttributeNames() {
		v, ok := c.opts.Strengths[n]
		if !ok {
			v = 1
		}
		e.Strength[n] = v
	}
	return e
}

type chatCompletion struct {
	ID       string        `json:"id"`
	Object   string        `json:"object"`
	Created  int64         `json:"created"`
	Model    string        `json:"model"`
	Choices  []chatChoice  `json:"choices"`
	Usage    *usage        `json:"usage,omitempty"`
	Steering *steeringEcho `json:"steering,omitempty"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      *chatOutMsg `json:"message,omitempty"`
	Delta        *chatOutMsg `json:"delta,omitempty"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason *string     `json:"finish_reason"`
}

type chatOutMsg struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type textCompletion struct {
	ID       string        `json:"id"`
	Object   string        `json:"object"`
	Created  int64         `json:"created"`
	Model    string        `json:"model"`
	Choices  []textChoice  `json:"choices"`
	Usage    *usage        `json:"usage,omitempty"`
	Steering *steeringEcho `json:"steering,omitempty"`
}

type textChoice struct {
	Index        int       `json:"index"`
	Text         string    `json:"text"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// sse writes server-sent events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSE(w http.ResponseWriter) *sse { return &sse{w: w, rc: http.NewResponseController(w)} }

func (e *sse) start(id string) error {
	h := e.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Request-Id", id)
	e.w.WriteHeader(http.StatusOK)
	return e.rc.Flush()
}

func (e *sse) send(v any) error {
	b, err := marshal(v)
	if err != nil {
		return fmt.Errorf("encoding an event: %w", err)
	}
	return e.raw(b)
}

// eventWriteTimeout bounds each event write, so a client that stops reading
// without disconnecting cannot hold a slot forever.
const eventWriteTimeout = 30 * time.Second

func (e *sse) raw(b []byte) error {
	_ = e.rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout)) // not supported by every ResponseWriter
	buf := make([]byte, 0, len(b)+8)
	buf = append(append(append(buf, "data: "...), b...), "\n\n"...)
	if _, err := e.w.Write(buf); err != nil {
		return err
	}
	return e.rc.Flush()
}

// fail reports an error inside an event stream (headers are already sent).
func (e *sse) fail(err error) {
	_ = e.send(asAPIError(err).body())
}

// seed draws a random sampling seed for requests without one.
func seed() uint32 { return rand.Uint32() }

// prepare validates the shared fields of a generation request.
func (s *Server) prepare(p *genParams, j *job) error {
	if err := p.unsupported(); err != nil {
		return err
	}
	sp, err := p.sampling(seed())
	if err != nil {
		return err
	}
	j.sampler = sp
	if j.stops, err = p.stops(); err != nil {
		return err
	}
	if j.steer, err = s.parseSteering(p.Steering); err != nil {
		return err
	}
	return nil
}

// finishError reports a generation error: as a JSON error before streaming
// started, as an error event after. A client that went away gets nothing.
// (A started stream stopped by shutdown is not an error: it ends with its
// final chunk and [DONE].)
func finishError(w http.ResponseWriter, stream *sse, started bool, err error) {
	switch {
	case errors.Is(err, errClientGone):
	case started:
		stream.fail(err)
	default:
		writeError(w, err)
	}
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, w, s.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, err)
		return
	}
	req, j, err := s.parseChat(body)
	if err != nil {
		writeError(w, err)
		return
	}
	created := time.Now().Unix()
	if !req.Stream {
		var b strings.Builder
		out, err := s.run(r.Context(), j, func() error { return nil }, func(t string) error { b.WriteString(t); return nil })
		if err != nil {
			finishError(w, nil, false, err)
			return
		}
		content := b.String()
		w.Header().Set("X-Request-Id", j.id)
		writeJSON(w, http.StatusOK, chatCompletion{ID: j.id, Object: "chat.completion", Created: created, Model: s.modelID,
			Choices: []chatChoice{{Message: &chatOutMsg{Role: "assistant", Content: &content}, FinishReason: &out.finish}},
			Usage:   out.usage(), Steering: echoSteering(j.steer)})
		return
	}
	stream := newSSE(w)
	started := false
	chunk := func(delta *chatOutMsg, finish *string) chatCompletion {
		return chatCompletion{ID: j.id, Object: "chat.completion.chunk", Created: created, Model: s.modelID,
			Choices: []chatChoice{{Delta: delta, FinishReason: finish}}}
	}
	out, err := s.run(r.Context(), j, func() error {
		started = true
		if err := stream.start(j.id); err != nil {
			return err
		}
		empty := ""
		return stream.send(chunk(&chatOutMsg{Role: "assistant", Content: &empty}, nil))
	}, func(t string) error {
		return stream.send(chunk(&chatOutMsg{Content: &t}, nil))
	})
	if err != nil && !(started && errors.Is(err, errShuttingDown)) {
		finishError(w, stream, started, err)
		return
	}
	// A stream cut short by shutdown ends like any other.
	if stream.send(chunk(&chatOutMsg{}, &out.finish)) != nil {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if stream.send(chatCompletion{ID: j.id, Object: "chat.completion.chunk", Created: created, Model: s.modelID,
			Choices: []chatChoice{}, Usage: out.usage()}) != nil {
			return
		}
	}
	_ = stream.raw([]byte("[DONE]"))
}

// parseChat validates a /v1/chat/completions body and turns it into a job.
// Every error is an *APIError with a 4xx status.
func (s *Server) parseChat(body []byte) (*chatRequest, *job, error) {
	var req chatRequest
	if err := decodeStrict(body, &req, false, ""); err != nil {
		return nil, nil, err
	}
	j := &job{id: newID("chatcmpl-"), endpoint: "chat"}
	if err := s.prepare(&req.genParams, j); err != nil {
		return nil, nil, err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tools", req.Tools}, {"functions", req.Functions}} {
		if !isNull(f.raw) && string(f.raw) != "[]" {
			return nil, nil, invalid(f.name, "%s (function calling) is not supported", f.name)
		}
	}
	if !isNull(req.ResponseFormat) {
		var rf struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(req.ResponseFormat, &rf) != nil || rf.Type != "text" {
			return nil, nil, invalid("response_format", "only response_format {\"type\": \"text\"} is supported")
		}
	}
	msgs, err := chatMessages(req.Messages)
	if err != nil {
		return nil, nil, err
	}
	if s.cfg.ChatTemplate == "" && s.model.ChatTemplate() == "" {
		return nil, nil, invalid("messages", "model %s has no chat template: use /v1/completions, or start the server with a chat template (--chat-template chatml)", s.modelID)
	}
	text, err := s.model.ApplyChatTemplate(s.cfg.ChatTemplate, msgs, true)
	if err != nil {
		return nil, nil, invalid("messages", "applying the chat template: %v", err)
	}
	if j.prompt, err = s.model.Tokenize(text, true, true); err != nil {
		return nil, nil, invalid("messages", "tokenizing the prompt: %v", err)
	}
	maxTokens, param := req.MaxCompletionTokens, "max_completion_tokens"
	if maxTokens == nil {
		maxTokens, param = req.MaxTokens, "max_tokens"
	}
	if err := s.checkLength(j, maxTokens, param); err != nil {
		return nil, nil, err
	}
	return &req, j, nil
}

// parseCompletion validates a /v1/completions body and turns it into a job.
// Every error is an *APIError with a 4xx status.
func (s *Server) parseCompletion(body []byte) (*completionRequest, *job, error) {
	var req completionRequest
	if err := decodeStrict(body, &req, false, ""); err != nil {
		return nil, nil, err
	}
	j := &job{id: newID("cmpl-"), endpoint: "completions"}
	if err := s.prepare(&req.genParams, j); err != nil {
		return nil, nil, err
	}
	switch {
	case req.Echo:
		return nil, nil, invalid("echo", "echo is not supported")
	case req.Suffix != nil && *req.Suffix != "":
		return nil, nil, invalid("suffix", "suffix is not supported")
	case req.BestOf != nil && *req.BestOf != 1:
		return nil, nil, invalid("best_of", "best_of=%d is not supported (best_of must be 1)", *req.BestOf)
	}
	text, toks, err := completionPrompt(req.Prompt, s.model.NVocab())
	if err != nil {
		return nil, nil, err
	}
	if toks == nil {
		if toks, err = s.model.Tokenize(text, true, true); err != nil {
			return nil, nil, invalid("prompt", "tokenizing the prompt: %v", err)
		}
	}
	j.prompt = toks
	if err := s.checkLength(j, req.MaxTokens, "max_tokens"); err != nil {
		if ae, ok := err.(*APIError); ok && ae.Param == "messages" {
			ae.Param = "prompt"
		}
		return nil, nil, err
	}
	return &req, j, nil
}

func (s *Server) handleCompletion(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, w, s.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, err)
		return
	}
	req, j, err := s.parseCompletion(body)
	if err != nil {
		writeError(w, err)
		return
	}
	created := time.Now().Unix()
	if !req.Stream {
		var b strings.Builder
		out, err := s.run(r.Context(), j, func() error { return nil }, func(t string) error { b.WriteString(t); return nil })
		if err != nil {
			finishError(w, nil, false, err)
			return
		}
		w.Header().Set("X-Request-Id", j.id)
		writeJSON(w, http.StatusOK, textCompletion{ID: j.id, Object: "text_completion", Created: created, Model: s.modelID,
			Choices: []textChoice{{Text: b.String(), FinishReason: &out.finish}}, Usage: out.usage(), Steering: echoSteering(j.steer)})
		return
	}
	stream := newSSE(w)
	started := false
	chunk := func(text string, finish *string) textCompletion {
		return textCompletion{ID: j.id, Object: "text_completion", Created: created, Model: s.modelID,
			Choices: []textChoice{{Text: text, FinishReason: finish}}}
	}
	out, err := s.run(r.Context(), j, func() error {
		started = true
		return stream.start(j.id)
	}, func(t string) error { return stream.send(chunk(t, nil)) })
	if err != nil && !(started && errors.Is(err, errShuttingDown)) {
		finishError(w, stream, started, err)
		return
	}
	// A stream cut short by shutdown ends like any other.
	if stream.send(chunk("", &out.finish)) != nil {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if stream.send(textCompletion{ID: j.id, Object: "text_completion", Created: created, Model: s.modelID,
			Choices: []textChoice{}, Usage: out.usage()}) != nil {
			return
		}
	}
	_ = stream.raw([]byte("[DONE]"))
}

type modelInfo struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// matsteer extensions
	NCtx   int `json:"n_ctx"`
	NEmbd  int `json:"n_embd"`
	NLayer int `json:"n_layer"`
}

func (s *Server) modelInfo() modelInfo {
	return modelInfo{ID: s.modelID, Object: "model", Created: s.created, OwnedBy: "matsteer",
		NCtx: s.nCtx, NEmbd: s.model.NEmbd(), NLayer: s.model.NLayer()}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelInfo{s.modelInfo()}})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.modelID {
		writeError(w, &APIError{Status: http.StatusNotFound, Type: errNotFound, Param: "model", Code: "model_not_found",
			Message: fmt.Sprintf("model %q does not exist; this server serves %q", id, s.modelID)})
		return
	}
	writeJSON(w, http.StatusOK, s.modelInfo())
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		Model  string `json:"model"`
		Stats
	}{"ok", s.modelID, s.Stats()})
}

func (s *Server) handleSteeringList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": s.Steering()})
}

func (s *Server) handleSteeringGet(w http.ResponseWriter, r *http.Request) {
	e, ok := s.reg.get(r.PathValue("name"))
	if !ok {
		writeError(w, &APIError{Status: http.StatusNotFound, Type: errNotFound, Param: "name", Code: "steering_not_found",
			Message: fmt.Sprintf("no steering file named %q is loaded (loaded: %s)", r.PathValue("name"), listNames(s.reg.names()))})
		return
	}
	writeJSON(w, http.StatusOK, e.info())
}

func (s *Server) handleSteeringLoad(w http.ResponseWriter, r *http.Request) {
	if s.runtimeLoadsOff(w) {
		return
	}
	var req struct {
		Name    string `json:"name"`
		Path    string `json:"path"`
		Replace bool   `json:"replace"`
	}
	body, err := readBody(r, w, s.cfg.MaxBodyBytes)
	if err == nil {
		err = decodeStrict(body, &req, true, "")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	info, err := s.LoadSteeringFromDir(req.Name, req.Path, req.Replace)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) handleSteeringUnload(w http.ResponseWriter, r *http.Request) {
	if s.runtimeLoadsOff(w) {
		return
	}
	name := r.PathValue("name")
	if err := s.UnloadSteering(name); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "object": "steering_file", "deleted": true})
}
