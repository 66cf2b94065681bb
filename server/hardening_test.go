package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/textstream"
	"github.com/matsteer/matsteer/llama"
)

// TestSteeringLoadHostilePaths loads devices, a FIFO, a directory, an
// oversized file and files with secret-looking bytes over HTTP: each answer
// is a quick 400 or 403 that echoes none of the bytes and does not tell
// whether a path outside the steering directory exists.
func TestSteeringLoadHostilePaths(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	const secret = "root:$6$s3cr3tSALT$hash:19000:0:99999:7:::\n"
	shadow := filepath.Join(outside, "shadow")
	if err := os.WriteFile(shadow, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.SteerDir = dir }})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(syscall.Mkfifo(filepath.Join(dir, "fifo.gguf"), 0o600))
	must(os.Mkdir(filepath.Join(dir, "subdir.gguf"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "shadow-copy"), []byte(secret), 0o600))
	must(os.WriteFile(filepath.Join(dir, "gguf-ish.gguf"), []byte("GGUF\x03\x00\x00\x00"+secret), 0o600))
	big, err := os.Create(filepath.Join(dir, "big.gguf"))
	must(err)
	must(big.Truncate(MaxSteerFileBytes + 1)) // sparse
	big.Close()
	for name, target := range map[string]string{
		"zero.gguf": "/dev/zero", "urandom.gguf": "/dev/urandom", "shadow.gguf": shadow,
		"missing-outside.gguf": filepath.Join(outside, "nope"), "up.gguf": "../" + filepath.Base(outside) + "/shadow",
		"etc": "/etc",
	} {
		must(os.Symlink(target, filepath.Join(dir, name)))
	}
	cases := []struct {
		path, contains string
	}{
		{"/dev/zero", "must be relative"},
		{"/dev/urandom", "must be relative"},
		{shadow, "must be relative"},
		{"../" + filepath.Base(outside) + "/shadow", "must be relative"},
		{"zero.gguf", "no loadable steering file"},
		{"urandom.gguf", "no loadable steering file"},
		{"shadow.gguf", "no loadable steering file"},
		{"missing-outside.gguf", "no loadable steering file"},
		{"up.gguf", "no loadable steering file"},
		{"etc/shadow", "no loadable steering file"},
		{"etc/no-such-file", "no loadable steering file"},
		{"missing.gguf", "no loadable steering file"},
		{"fifo.gguf", "not a regular file (it is a named pipe (FIFO))"},
		{"subdir.gguf", "not a regular file (it is a directory)"},
		{"big.gguf", "more than the limit"},
		{"shadow-copy", "not a valid matsteer steering file"},
		{"gguf-ish.gguf", "not a valid matsteer steering file"},
		{"", "required"},
		{strings.Repeat("a/", 600), "not a valid file name"},
		{"a\x00b", "not a valid file name"},
	}
	for _, c := range cases {
		t0 := time.Now()
		pj, _ := json.Marshal(c.path)
		status, v := f.post("/v1/steering", fmt.Sprintf(`{"name":"x","path":%s}`, pj))
		msg, _, param := errorOf(t, v)
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("%q took %v", c.path, d)
		}
		if status != 400 || param != "path" || !strings.Contains(msg, c.contains) {
			t.Errorf("%q: %d %q %q, want 400 path %q", c.path, status, param, msg, c.contains)
		}
		for _, leak := range []string{"root", "s3cr3t", "GGUF", "magic", "\\x00", outside} {
			if strings.Contains(msg, leak) && !strings.Contains(c.path, leak) {
				t.Errorf("%q: message %q reveals %q", c.path, msg, leak)
			}
		}
	}
	// Outside the directory, an existing and a missing file get the same
	// answer (but for the path the client sent).
	_, a := f.post("/v1/steering", `{"name":"x","path":"shadow.gguf"}`)
	_, b := f.post("/v1/steering", `{"name":"x","path":"missing-outside.gguf"}`)
	ma, _, _ := errorOf(t, a)
	mb, _, _ := errorOf(t, b)
	if strings.ReplaceAll(ma, "shadow.gguf", "P") != strings.ReplaceAll(mb, "missing-outside.gguf", "P") {
		t.Errorf("existing and missing outside files are distinguishable: %q vs %q", ma, mb)
	}
	// The server keeps serving and nothing was registered.
	if names := f.srv.reg.names(); len(names) != 1 {
		t.Errorf("registered %v", names)
	}
	if status, v := f.post("/v1/completions", `{"prompt":"still here","max_tokens":2}`); status != 200 {
		t.Fatalf("after hostile loads: %d %v", status, v)
	}
}

// TestNewRefusesBadConfig: out-of-range numbers, a broken chat template and
// a missing or non-directory steering directory fail New with a clear error
// (serve then fails at start-up, not on the first request).
func TestNewRefusesBadConfig(t *testing.T) {
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	train := m.NCtxTrain()
	cases := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"negative parallel", func(c *Config) { c.Parallel = -1 }, "slots is out of range [1, 256]"},
		{"huge parallel", func(c *Config) { c.Parallel = 100000 }, "slots is out of range"},
		{"queue below -1", func(c *Config) { c.QueueSize = -2 }, "queue size -2 is out of range"},
		{"huge queue", func(c *Config) { c.QueueSize = 1 << 30 }, "queue size"},
		{"negative ctx", func(c *Config) { c.NCtx = -5 }, "at least 256"},
		{"small ctx", func(c *Config) { c.NCtx = 16 }, "at least 256"},
		{"ctx beyond training", func(c *Config) { c.NCtx = train + 256 }, "training context"},
		{"ctx not a multiple of 256", func(c *Config) { c.NCtx = 300 }, "multiple of 256"},
		{"huge ctx", func(c *Config) { c.NCtx = 1 << 40 }, "training context"},
		{"negative threads", func(c *Config) { c.Threads = -1 }, "threads is out of range"},
		{"huge threads", func(c *Config) { c.Threads = 1 << 20 }, "threads is out of range"},
		{"negative body", func(c *Config) { c.MaxBodyBytes = -1 }, "body limit"},
		{"huge body", func(c *Config) { c.MaxBodyBytes = 1 << 40 }, "body limit"},
		{"broken template", func(c *Config) { c.ChatTemplate = "this is not a template" }, "chat template"},
		{"jinja garbage", func(c *Config) { c.ChatTemplate = "{% for m in messages %}{{ m.content" }, "chat template"},
		{"missing steer dir", func(c *Config) { c.SteerDir = filepath.Join(t.TempDir(), "none") }, "steering directory"},
		{"steer dir is a file", func(c *Config) { c.SteerDir = file }, "not a directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Model: m, Catalog: cat, Parallel: 1, NCtx: 256, Threads: 1}
			c.cfg(&cfg)
			t0 := time.Now()
			s, err := New(cfg)
			if err == nil {
				s.Close()
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to mention %q", err, c.want)
			}
			if d := time.Since(t0); d > time.Second {
				t.Errorf("took %v (checked after allocating?)", d)
			}
		})
	}
	// A llama.cpp template name and the defaults work.
	s, err := New(Config{Model: m, Catalog: cat, Parallel: 1, Threads: 1, ChatTemplate: "chatml"})
	if err != nil {
		t.Fatal(err)
	}
	if s.NCtx() != min(DefaultNCtx, train) {
		t.Errorf("default context %d", s.NCtx())
	}
	s.Close()
}

// TestCutCharactersDropped: generations cut by max_tokens wherever they
// fall stream chunks of valid UTF-8 that add up to the non-streamed text,
// which is the generated bytes with a character cut at the end dropped
// (before, it ended in U+FFFD). Some of the cases must end inside a
// character for the test to mean anything.
func TestCutCharactersDropped(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cut := 0
	for _, prompt := range []string{"ünï", "日本", "😀 x", "abc"} {
		toks := f.promptTokens(prompt)
		for n := 1; n <= 12; n++ {
			raw := f.referenceBytes(toks, n, nil)
			want := textstream.Valid(raw)
			if !utf8.Valid(raw) && strings.ToValidUTF8(string(raw), "\uFFFD") != want {
				cut++ // the old decoder would have ended in U+FFFD here
			}
			body := fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":0,"stream":%%v}`, prompt, n)
			status, v := f.post("/v1/completions", fmt.Sprintf(body, false))
			if status != 200 {
				t.Fatalf("%d %v", status, v)
			}
			text := v["choices"].([]any)[0].(map[string]any)["text"].(string)
			if text != want {
				t.Fatalf("%q max_tokens %d: %q, want %q (raw %q)", prompt, n, text, want, raw)
			}
			chunks := f.streamCompletionChunks(fmt.Sprintf(body, true))
			if strings.Join(chunks, "") != text {
				t.Fatalf("%q max_tokens %d: stream %q != %q", prompt, n, chunks, text)
			}
		}
	}
	t.Logf("%d of 48 generations ended inside a character", cut)
	if cut == 0 {
		t.Fatal("no generation ended inside a character: the test checks nothing")
	}
}

func (f *fixture) promptTokens(text string) []llama.Token {
	f.t.Helper()
	toks, err := f.m.Tokenize(text, true, true)
	if err != nil {
		f.t.Fatal(err)
	}
	return toks
}

// streamCompletionChunks posts a streaming completion and returns the
// non-empty texts of its chunks, checking each is valid UTF-8 and that the
// stream ends with a finish_reason and [DONE].
func (f *fixture) streamCompletionChunks(body string) []string {
	f.t.Helper()
	resp, err := http.Post(f.ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	ev := readSSE(f.t, resp.Body)
	var out []string
	for _, e := range ev.events {
		ch, _ := e["choices"].([]any)
		if len(ch) == 0 {
			continue
		}
		text, _ := ch[0].(map[string]any)["text"].(string)
		if !utf8.ValidString(text) {
			f.t.Errorf("chunk %q is not valid UTF-8", text)
		}
		if text != "" {
			out = append(out, text)
		}
	}
	if !ev.done || ev.finish == "" {
		f.t.Errorf("stream without finish_reason (%q) or [DONE] (%v)", ev.finish, ev.done)
	}
	return out
}
