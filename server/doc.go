// Package server is matsteer's OpenAI-compatible HTTP server with
// per-request, hot-swappable gated steering (`matsteer serve`).
//
// To steer requests in an HTTP handler of your own, use the root package
// matsteer instead (see examples/httpsteer).
//
// llama.cpp's own server applies control vectors at start-up, to every
// request. Here each request picks its steering file and strengths (or none),
// and steering files can be loaded and unloaded while the server runs.
//
// # Endpoints
//
//	POST   /v1/chat/completions   chat (messages → chat template), streaming or not
//	POST   /v1/completions        raw text completion, streaming or not
//	GET    /v1/models             the one loaded model (also GET /v1/models/{id})
//	GET    /v1/steering           loaded steering files: site, layer, attributes
//	GET    /v1/steering/{name}    one steering file
//	POST   /v1/steering           load a file: {"name": "safety", "path": "safety.gguf", "replace": false}
//	DELETE /v1/steering/{name}    unload a file
//	GET    /health                {"status": "ok", slots, slots_busy, queued, request counters, cached_prompt_tokens}
//
// Requests and responses follow OpenAI's wire format, so official clients
// work unchanged (set the base URL to http://HOST:PORT/v1). Supported request
// fields: model (accepted, the server answers with its own model id),
// messages (string or text-part content; roles system, developer, user,
// assistant), prompt (completions: a string, one string in an array, or
// token ids), max_tokens / max_completion_tokens (default: the rest of the
// context), temperature (0 to 2, default 1; 0 is greedy), top_p, seed,
// stop (up to four strings), stream, stream_options.include_usage, plus
// llama.cpp's top_k, min_p, repeat_penalty and ignore_eos. Every number has a checked
// range: max_tokens in [1, context - prompt], temperature [0, 2], top_p
// (0, 1], min_p [0, 1], repeat_penalty [0, 10], top_k [0, 2^20] (0: off),
// seed [0, 2^32-2] (-1 or absent: random), n and best_of 1; a number that
// does not fit its type (1e400, 1e30 tokens) is a 400 that says so.
// Generated text is valid UTF-8: a character cut by the end of generation
// is dropped, never sent as U+FFFD (internal/textstream), and stop
// sequences only match whole characters. Responses carry usage
// (prompt, completion and total tokens) and finish_reason "stop" (end of
// generation or a stop sequence) or "length" (max_tokens or the context
// is full). Streams are server-sent events ending with "data: [DONE]".
// Unsupported features (n > 1, logprobs, tools, JSON mode, echo,
// frequency/presence penalties) are refused with a 400 rather than ignored.
//
// # Per-request steering
//
// The extension field "steering" chooses a loaded steering file and its
// strengths:
//
//	{"model": "smollm2", "messages": [{"role": "user", "content": "..."}],
//	 "steering": {"file": "safety", "strength": {"toxicity": 1.0, "truthfulness": 0.5}, "global": 1.0}}
//
// file is the name the file was loaded under (required); global is α and
// strength maps attribute names to s_t (each a number in [0, 1000];
// defaults 1; an attribute left out has strength 1). Each steered row gets
// a + α·Σ_t s_t·g_t(a)·θ_t with the file's per-token gates g_t. Without the
// field (or with "steering": null) nothing is installed and the output is
// bit-identical to plain llama.cpp generation; all-zero strengths are
// likewise exactly unsteered. Non-streamed responses echo the steering used
// in a "steering" field. With openai-go:
//
//	client.Chat.Completions.New(ctx, params,
//		option.WithJSONSet("steering", map[string]any{"file": "safety", "strength": map[string]float64{"toxicity": 1}}))
//
// With the Python client: extra_body={"steering": {...}}.
//
// # Steering files at run time
//
// POST /v1/steering reads a steering file, validates it against the model
// (architecture, width, layer, hook site: intervene.Check) and registers it;
// a name already in use is refused with 409 unless "replace" is true.
// DELETE /v1/steering/{name} unloads it. Requests already running keep the
// file they started with. Both need Config.SteerDir (--steer-dir): without
// it they answer 403 and the files are fixed at start-up. Paths are
// relative to that directory and may not leave it, also through symbolic
// links (os.Root); only regular files up to MaxSteerFileBytes are read,
// opened without blocking (a FIFO or device answers at once). Errors never
// quote the file's bytes (parse errors go to the log), and a path outside
// the directory gets the same answer whether or not it exists.
// Config.ReadOnlySteering (--steer-readonly) disables loads even with a
// directory.
//
// # Concurrency and isolation
//
// The server runs one engine.Engine: one llama.cpp context whose KV memory
// holds Config.Parallel sequences (--parallel, default 4) of Config.NCtx
// tokens each. Every decode step is one batch with the next token of each
// generating request and prompt chunks of newly admitted ones (continuous
// batching); Config.Threads is the thread budget of that decode, so a lone
// request gets all of it. Each request gets a steering intervention made
// just for it (if any), applied by a per-layer router to that request's
// rows only, so requests with different files, strengths or none share a
// batch and never see each other's steering: with greedy decoding every
// request gets the output it gets alone. A request reuses the KV entries of
// the longest prompt prefix it shares with a cached sequence under the same
// steering (usage.prompt_tokens_details.cached_tokens says how many).
// Requests wait for a sequence in a queue bounded by Config.QueueSize
// (--queue); when it is full they get 503. A client that disconnects (or a
// request whose context ends) stops its generation within a step and frees
// its sequence, also while waiting in the queue; a streaming
// client that stops reading is dropped after 30 s without progress.
//
// # Errors
//
// Every error is a JSON body in OpenAI's form, with the request field at
// fault in param:
//
//	{"error": {"message": "steering file \"safety\" has no attribute \"toxicty\" (it has toxicity, truthfulness)",
//	           "type": "invalid_request_error", "param": "steering.strength.toxicty", "code": null}}
//
// 400 invalid_request_error: malformed JSON, wrong types, unknown steering
// files (code steering_not_found) or attributes, strengths that are not
// finite numbers in [0, 1000], unknown fields inside "steering", prompts
// that do not fit the context or max_tokens beyond it (code
// context_length_exceeded), sampling parameters out of range, unsupported
// features. 401 authentication_error: wrong API key (--api-key). 404
// not_found_error: unknown endpoint, model or steering file. 405: wrong
// method. 409: steering name in use. 413: body over Config.MaxBodyBytes
// (--max-body, default 1 MiB). 503 server_overloaded (code queue_full): the
// queue is full; retry later (Retry-After: 1). 500 server_error: the
// generation failed. An error after a stream started arrives as a final
// "data: {"error": ...}" event, which OpenAI clients report as a stream
// error.
//
// # Audit log
//
// With Config.AuditLog (--audit-log FILE) every steered request writes one
// JSON line per steered row (prompt and generated tokens), all lines of a
// request together:
//
//	{"request_id":"chatcmpl-…","file":"safety","pos":12,"token":4417,"text":" idiot","generated":true,
//	 "gates":{"toxicity":0.91,"truthfulness":0.03},"delta":0.37}
//
// request_id is the response's id (also sent as the X-Request-Id header).
//
// # Shutdown
//
// Serve stops on context cancellation (matsteer serve: SIGINT or SIGTERM):
// it stops accepting connections and lets running and queued requests
// finish for a grace period (--shutdown-timeout). Then every request still
// there gets a complete answer: a running stream its final chunk
// (finish_reason "length") and "data: [DONE]"; any other request, queued or
// running, a 503 server_overloaded error with code server_shutting_down and
// Retry-After. Stats.Admitted equals Completed + Cancelled + Rejected +
// Failed once the server is idle. TestShutdownContract is this contract.
package server
