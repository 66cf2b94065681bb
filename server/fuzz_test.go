package server

import (
	"errors"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
)

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
	fuzzErr  error
)

// fuzzServer is one server on the random model, shared by the fuzz inputs
// (parsing never generates, so it is never busy).
func fuzzServer(t testing.TB) *Server {
	fuzzOnce.Do(func() {
		m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
		if err != nil {
			fuzzErr = err
			return
		}
		cat, err := hooks.Probe(m)
		if err != nil {
			fuzzErr = err
			return
		}
		s, err := New(Config{Model: m, Catalog: cat, Parallel: 1, Threads: 1, NCtx: 512})
		if err != nil {
			fuzzErr = err
			return
		}
		if _, err := s.register("tone", "tone.gguf", testSteerFile(m.NEmbd(), 2), false); err != nil {
			fuzzErr = err
			return
		}
		fuzzSrv = s // left open for the process: shared by every input
	})
	if fuzzErr != nil {
		t.Fatal(fuzzErr)
	}
	return fuzzSrv
}

// FuzzRequestParsing feeds arbitrary bodies to the chat and completion
// parsers (everything a request goes through before it waits for a slot).
// Each body is either refused with a 4xx *APIError whose message is valid
// UTF-8, or accepted as a job that fits the context with valid sampling.
// The seeds run with plain `go test`.
func FuzzRequestParsing(f *testing.F) {
	for _, seed := range []string{
		`{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`,
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"}]}],"temperature":0.5,"top_p":0.9,"top_k":40,"seed":7,"stop":["x","y"],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"user","content":"hi"}],"steering":{"file":"tone","strength":{"tone":0.5,"style":2},"global":1.5}}`,
		`{"messages":[{"role":"user","content":"hi"}],"steering":{"file":"tone","strenght":{}}}`,
		`{"messages":[{"role":"user","content":"hi"}],"temperature":1e400,"max_tokens":99999999999999999999}`,
		`{"messages":[{"role":"tool","content":null}],"n":-1,"logprobs":true,"tools":[{}]}`,
		`{"prompt":"once upon a time","max_tokens":8,"min_p":0.1,"repeat_penalty":1.1}`,
		`{"prompt":[1,2,3,99999],"echo":true}`,
		`{"prompt":[[1,2]],"best_of":1,"suffix":""}`,
		`{"prompt":["a","b"],"seed":-1,"top_k":-1}`,
		`{"prompt":"x","stop":"` + "\xff\xfe" + `","max_tokens":0}`,
		`{"prompt":"x","max_completion_tokens":1.5,"response_format":{"type":"json_object"}}`,
		`[1,2]`, `null`, `"str"`, `{}`, `{"messages":[`, `{"a":1}}`, "", `{"prompt":"a"} trailing`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, chat bool) {
		s := fuzzServer(t)
		var j *job
		var err error
		if chat {
			_, j, err = s.parseChat(body)
		} else {
			_, j, err = s.parseCompletion(body)
		}
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Message == "" || ae.Type == "" {
				t.Fatalf("%q: error %T %v is not a 4xx APIError", body, err, err)
			}
			if !utf8.ValidString(ae.Message) || !utf8.ValidString(ae.Param) {
				t.Fatalf("%q: error message is not valid UTF-8: %q", body, ae.Message)
			}
			if len(ae.Message) > 4096 {
				t.Fatalf("%q: error message of %d bytes", body, len(ae.Message))
			}
			return
		}
		if len(j.prompt) == 0 || j.maxTokens < 1 || len(j.prompt)+j.maxTokens > s.NCtx() {
			t.Fatalf("%q: accepted a job that does not fit: %d prompt tokens, max %d, context %d", body, len(j.prompt), j.maxTokens, s.NCtx())
		}
		if err := j.sampler.Validate(); err != nil {
			t.Fatalf("%q: accepted invalid sampling %+v: %v", body, j.sampler, err)
		}
		if len(j.stops) > maxStops {
			t.Fatalf("%q: %d stops", body, len(j.stops))
		}
		for _, p := range j.prompt {
			if p < 0 || int(p) >= s.model.NVocab() {
				t.Fatalf("%q: token %d outside the vocabulary", body, p)
			}
		}
		if j.steer != nil {
			for n, v := range j.steer.opts.Strengths {
				if !j.steer.entry.attrs[n] || v < 0 || v > 1000 {
					t.Fatalf("%q: strength %s=%v", body, n, v)
				}
			}
		}
	})
}
