package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// Limits on request fields.
const (
	maxStops       = 4   // stop sequences per request (OpenAI's limit)
	maxStopLen     = 256 // bytes per stop sequence
	maxTemperature = 2.0 // OpenAI's range is [0, 2]
	maxMessages    = 4096
	maxTopK        = 1 << 20   // top_k in [0, maxTopK]; 0: off
	maxSeed        = 1<<32 - 2 // seed in [-1, maxSeed]; -1: random (as absent)
)

// genParams are the sampling fields shared by /v1/chat/completions and
// /v1/completions.
type genParams struct {
	Model            string          `json:"model"`
	MaxTokens        *int            `json:"max_tokens"`
	Temperature      *float64        `json:"temperature"`
	TopP             *float64        `json:"top_p"`
	TopK             *int            `json:"top_k"`          // llama.cpp extension
	MinP             *float64        `json:"min_p"`          // llama.cpp extension
	RepeatPenalty    *float64        `json:"repeat_penalty"` // llama.cpp extension
	IgnoreEOS        bool            `json:"ignore_eos"`     // llama.cpp extension: generate to max_tokens
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	Seed             *int64          `json:"seed"`
	N                *int            `json:"n"`
	Stream           bool            `json:"stream"`
	StreamOptions    *streamOptions  `json:"stream_options"`
	Stop             json.RawMessage `json:"stop"`
	Logprobs         json.RawMessage `json:"logprobs"`
	TopLogprobs      json.RawMessage `json:"top_logprobs"`
	LogitBias        json.RawMessage `json:"logit_bias"`
	Steering         json.RawMessage `json:"steering"` // matsteer extension
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	genParams
	Messages            []chatMessageIn `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Tools               json.RawMessage `json:"tools"`
	Functions           json.RawMessage `json:"functions"`
	ResponseFormat      json.RawMessage `json:"response_format"`
}

type chatMessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	genParams
	Prompt json.RawMessage `json:"prompt"`
	Echo   bool            `json:"echo"`
	Suffix *string         `json:"suffix"`
	BestOf *int            `json:"best_of"`
}

// steeringRequest is the "steering" extension field.
type steeringRequest struct {
	File     string                     `json:"file"`
	Strength map[string]json.RawMessage `json:"strength"`
	Global   json.RawMessage            `json:"global"`
}

// readBody reads the whole body, up to limit bytes. Reading to the end also
// lets net/http notice a client that disconnects while we generate.
func readBody(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, invalid("", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("", "the request body is empty; send a JSON object")
	}
	return body, nil
}

// decodeStrict decodes data into v; unknown fields are errors when strict.
// prefix qualifies field names in messages (e.g. "steering.").
func decodeStrict(data []byte, v any, strict bool, prefix string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err, prefix, v)
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return invalid(strings.TrimSuffix(prefix, "."), "malformed JSON: unexpected data after the JSON value at byte %d", dec.InputOffset())
	}
	return nil
}

// jsonError explains a decoding error; v is what was being decoded (its
// fields are listed for an unknown field).
func jsonError(err error, prefix string, v any) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	where := strings.TrimSuffix(prefix, ".")
	switch {
	case errors.As(err, &se):
		return invalid(where, "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return invalid(where, "malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		// Fields of embedded structs are reported as "genParams.name".
		field := prefix + strings.TrimPrefix(te.Field, "genParams.")
		if te.Field == "" {
			field = where
			if field == "" {
				return invalid("", "the request body must be a JSON object, got %s", te.Value)
			}
		}
		want := jsonTypeName(te.Type)
		if lit, ok := strings.CutPrefix(te.Value, "number "); ok {
			// A JSON number that does not fit the field's Go type.
			switch {
			case want == "a number":
				return invalid(field, "%s %s is out of range: it is not a finite 64-bit number", field, shorten(lit))
			case want == "an integer" && strings.ContainsAny(lit, ".eE"):
				return invalid(field, "%s must be an integer, got %s", field, shorten(lit))
			case want == "an integer":
				return invalid(field, "%s %s is out of range for an integer", field, shorten(lit))
			}
		}
		return invalid(field, "%s must be %s, got %s", field, want, te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		in := "the request body"
		if where != "" {
			in = where
		}
		return invalid(prefix+name, "unknown field %s in %s (known fields: %s)", shortQuote(name), in, strings.Join(jsonFields(v), ", "))
	}
	return invalid(where, "malformed JSON: %v", err)
}

// shorten cuts a client-supplied literal for an error message.
func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// jsonFields lists the JSON field names of the struct v points to, sorted.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-":
			case f.Anonymous && name == "":
				walk(f.Type)
			case name != "":
				out = append(out, name)
			case f.IsExported():
				out = append(out, f.Name)
			}
		}
	}
	if t != nil {
		walk(t)
	}
	sort.Strings(out)
	return out
}

func jsonTypeName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "of a different type"
}

// isNull reports whether a raw field is absent or null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// sampling validates the sampling fields and returns llama's parameters.
// seed is used when the request has none.
func (p *genParams) sampling(seed uint32) (llama.SamplerParams, error) {
	sp := llama.SamplerParams{Temperature: 1, Seed: seed, IgnoreEOG: p.IgnoreEOS}
	if p.Temperature != nil {
		t := *p.Temperature
		if math.IsNaN(t) || t < 0 || t > maxTemperature {
			return sp, invalid("temperature", "temperature %v is out of range [0, %g]", t, maxTemperature)
		}
		sp.Temperature = t
	}
	if p.TopP != nil {
		v := *p.TopP
		if math.IsNaN(v) || v <= 0 || v > 1 {
			return sp, invalid("top_p", "top_p %v is out of range (0, 1]", v)
		}
		sp.TopP = v
	}
	if p.TopK != nil {
		if *p.TopK < 0 || *p.TopK > maxTopK {
			return sp, invalid("top_k", "top_k %d is out of range [0, %d] (0: off)", *p.TopK, maxTopK)
		}
		sp.TopK = *p.TopK
	}
	if p.MinP != nil {
		v := *p.MinP
		if math.IsNaN(v) || v < 0 || v > 1 {
			return sp, invalid("min_p", "min_p %v is out of range [0, 1]", v)
		}
		sp.MinP = v
	}
	if p.RepeatPenalty != nil {
		v := *p.RepeatPenalty
		if math.IsNaN(v) || v < 0 || v > 10 {
			return sp, invalid("repeat_penalty", "repeat_penalty %v is out of range [0, 10]", v)
		}
		sp.RepeatPenalty = v
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"frequency_penalty", p.FrequencyPenalty}, {"presence_penalty", p.PresencePenalty}} {
		if f.v != nil && *f.v != 0 {
			return sp, invalid(f.name, "%s is not supported (use repeat_penalty)", f.name)
		}
	}
	if p.Seed != nil && *p.Seed != -1 {
		if *p.Seed < 0 || *p.Seed > maxSeed {
			return sp, invalid("seed", "seed %d is out of range [0, %d] (-1: random)", *p.Seed, int64(maxSeed))
		}
		sp.Seed = uint32(*p.Seed)
	}
	if err := sp.Validate(); err != nil {
		return sp, invalid("", "sampling parameters: %v", err)
	}
	return sp, nil
}

// unsupported rejects fields this server does not implement.
func (p *genParams) unsupported() error {
	if p.N != nil && *p.N != 1 {
		return invalid("n", "n=%d is not supported: one choice per request (n must be 1)", *p.N)
	}
	if !isNull(p.Logprobs) && !bytes.Equal(bytes.TrimSpace(p.Logprobs), []byte("false")) {
		return invalid("logprobs", "logprobs are not supported")
	}
	if !isNull(p.TopLogprobs) {
		return invalid("top_logprobs", "top_logprobs are not supported")
	}
	if !isNull(p.LogitBias) && !bytes.Equal(bytes.TrimSpace(p.LogitBias), []byte("{}")) {
		return invalid("logit_bias", "logit_bias is not supported")
	}
	return nil
}

// stops parses "stop": a string or an array of up to four strings.
func (p *genParams) stops() ([]string, error) {
	if isNull(p.Stop) {
		return nil, nil
	}
	var list []string
	var one string
	if err := json.Unmarshal(p.Stop, &one); err == nil {
		list = []string{one}
	} else if err := json.Unmarshal(p.Stop, &list); err != nil {
		return nil, invalid("stop", "stop must be a string or an array of strings")
	}
	if len(list) > maxStops {
		return nil, invalid("stop", "at most %d stop sequences are allowed, got %d", maxStops, len(list))
	}
	for i, s := range list {
		if s == "" {
			return nil, invalid("stop", "stop sequence %d is empty", i)
		}
		if len(s) > maxStopLen {
			return nil, invalid("stop", "stop sequence %d is longer than %d bytes", i, maxStopLen)
		}
	}
	return list, nil
}

// steeringChoice is a validated "steering" field.
type steeringChoice struct {
	entry *steerEntry
	opts  steer.ApplyOptions
}

// cacheKey identifies the steering for the prompt cache: the file's load
// and every strength (KV entries computed under other strengths differ).
func (c *steeringChoice) cacheKey() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%s|%g", c.entry.load, c.entry.name, c.opts.Global)
	names := make([]string, 0, len(c.opts.Strengths))
	for n := range c.opts.Strengths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "|%q=%g", n, c.opts.Strengths[n])
	}
	return b.String()
}

// parseSteering validates the "steering" extension field against the loaded
// files; nil means unsteered.
func (s *Server) parseSteering(raw json.RawMessage) (*steeringChoice, error) {
	if isNull(raw) {
		return nil, nil
	}
	var sr steeringRequest
	if err := decodeStrict(raw, &sr, true, "steering."); err != nil {
		return nil, err
	}
	if sr.File == "" {
		return nil, invalid("steering.file", "steering.file is required: the name of a loaded steering file (loaded: %s)", listNames(s.reg.names()))
	}
	e, ok := s.reg.get(sr.File)
	if !ok {
		return nil, &APIError{Status: http.StatusBadRequest, Type: errInvalidRequest, Param: "steering.file", Code: "steering_not_found",
			Message: fmt.Sprintf("unknown steering file %q (loaded: %s)", sr.File, listNames(s.reg.names()))}
	}
	opts := steer.ApplyOptions{Global: 1, Strengths: map[string]float64{}}
	if !isNull(sr.Global) {
		g, err := strengthValue("steering.global", sr.Global)
		if err != nil {
			return nil, err
		}
		opts.Global = g
	}
	names := make([]string, 0, len(sr.Strength))
	for n := range sr.Strength {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		param := "steering.strength." + n
		if !e.attrs[n] {
			return nil, invalid(param, "steering file %q has no attribute %q (it has %s)", e.name, n, listNames(e.file.AttributeNames()))
		}
		v, err := strengthValue(param, sr.Strength[n])
		if err != nil {
			return nil, err
		}
		opts.Strengths[n] = v
	}
	return &steeringChoice{entry: e, opts: opts}, nil
}

// strengthValue parses one strength: a finite JSON number in [0, steer.MaxStrength].
func strengthValue(param string, raw json.RawMessage) (float64, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] == '"' || t[0] == '{' || t[0] == '[' || bytes.Equal(t, []byte("null")) ||
		bytes.Equal(t, []byte("true")) || bytes.Equal(t, []byte("false")) {
		return 0, invalid(param, "%s must be a number in [0, %g], got %s", param, steer.MaxStrength, t)
	}
	v, err := strconv.ParseFloat(string(t), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, invalid(param, "%s must be a finite number in [0, %g], got %s", param, steer.MaxStrength, t)
	}
	if v < 0 || v > steer.MaxStrength {
		return 0, invalid(param, "%s %v is out of range [0, %g]", param, v, steer.MaxStrength)
	}
	return v, nil
}

func listNames(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// chatMessages validates the messages and converts them for the chat template.
func chatMessages(in []chatMessageIn) ([]llama.ChatMessage, error) {
	if len(in) == 0 {
		return nil, invalid("messages", "messages must contain at least one message")
	}
	if len(in) > maxMessages {
		return nil, invalid("messages", "at most %d messages are allowed", maxMessages)
	}
	out := make([]llama.ChatMessage, len(in))
	for i, m := range in {
		param := fmt.Sprintf("messages[%d]", i)
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system"
		case "":
			return nil, invalid(param+".role", "%s.role is required", param)
		default:
			return nil, invalid(param+".role", "role %q is not supported (system, developer, user, assistant)", m.Role)
		}
		text, err := messageText(param+".content", m.Content)
		if err != nil {
			return nil, err
		}
		out[i] = llama.ChatMessage{Role: role, Content: text}
	}
	return out, nil
}

// messageText accepts a string or an array of text parts.
func messageText(param string, raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", invalid(param, "%s is required", param)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", invalid(param, "%s must be a string or an array of text parts", param)
	}
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", invalid(fmt.Sprintf("%s[%d]", param, i), "only text content parts are supported, got type %q", p.Type)
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}

// completionPrompt returns the prompt of a completion request: text, or
// tokens when the prompt is given as token ids.
func completionPrompt(raw json.RawMessage, nVocab int) (text string, toks []llama.Token, err error) {
	if isNull(raw) {
		return "", nil, invalid("prompt", "prompt is required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		if len(ss) != 1 {
			return "", nil, invalid("prompt", "exactly one prompt per request is supported, got %d", len(ss))
		}
		return ss[0], nil, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) != nil {
		var idss [][]int64
		if json.Unmarshal(raw, &idss) != nil {
			return "", nil, invalid("prompt", "prompt must be a string, an array of one string, or token ids")
		}
		if len(idss) != 1 {
			return "", nil, invalid("prompt", "exactly one prompt per request is supported, got %d", len(idss))
		}
		ids = idss[0]
	}
	if len(ids) == 0 {
		return "", nil, invalid("prompt", "prompt has no tokens")
	}
	toks = make([]llama.Token, len(ids))
	for i, id := range ids {
		if id < 0 || id >= int64(nVocab) {
			return "", nil, invalid("prompt", "token id %d at index %d is outside the vocabulary [0, %d)", id, i, nVocab)
		}
		toks[i] = llama.Token(id)
	}
	return "", toks, nil
}
