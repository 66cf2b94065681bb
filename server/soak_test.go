package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSoak runs mixed clients against a server on loopback for a bounded
// time (MATSTEER_SOAK_SECONDS, default 12): good requests (streamed or not,
// steered or not), bad ones (malformed or truncated JSON, wrong types, huge
// numbers and fields, deep nesting, invalid UTF-8, hostile steering loads)
// and clients that disconnect (mid-stream, mid-body, garbage bytes). It
// checks that every answer has the expected class, the server keeps serving
// with the same outputs, the counters balance, and Go heap, goroutines and
// RSS stay bounded.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test")
	}
	dur := 12 * time.Second
	if s, err := strconv.Atoi(os.Getenv("MATSTEER_SOAK_SECONDS")); err == nil && s > 0 {
		dur = time.Duration(s) * time.Second
	}
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) {
		c.Parallel = 2
		c.QueueSize = 4
		c.MaxBodyBytes = 64 << 10
		c.AuditLog = discard{}
	}})
	if err := syscall.Mkfifo(filepath.Join(f.dir, "fifo.gguf"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(f.dir, "zero.gguf")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	base := "http://" + addr
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, time.Second) }()
	defer stop()

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	wantPrompt := "soak reference"
	want := f.reference(f.promptTokens(wantPrompt), 8, nil)
	check := func() {
		t.Helper()
		resp, err := hc.Post(base+"/v1/completions", "application/json",
			strings.NewReader(fmt.Sprintf(`{"prompt":%q,"max_tokens":8,"temperature":0}`, wantPrompt)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v textCompletion
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 || v.Choices[0].Text != want {
			t.Fatalf("reference request: %d %+v %v", resp.StatusCode, v, err)
		}
	}
	check()

	var (
		seen503   atomic.Int64 // 503s any client saw
		good200   atomic.Int64 // completed good requests
		streamsIn atomic.Int64 // streams cut by their client
		counts    sync.Map     // action -> *atomic.Int64
	)
	count := func(name string) {
		v, _ := counts.LoadOrStore(name, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	// do sends a request and returns the status and body.
	do := func(method, path, body string) (int, []byte, error) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	// expectError checks a refused request: a status in want and an
	// OpenAI-shaped error body.
	expectError := func(what string, status int, body []byte, err error, want ...int) {
		if err != nil {
			fail("%s: %v", what, err)
			return
		}
		ok := false
		for _, w := range want {
			ok = ok || status == w
		}
		var v errorBody
		if !ok || json.Unmarshal(body, &v) != nil || v.Error.Message == "" {
			fail("%s: %d %.200q, want one of %v with an error body", what, status, body, want)
		}
	}
	good := func(rng *rand.Rand) string {
		steer := ""
		if rng.IntN(2) == 0 {
			steer = fmt.Sprintf(`,"steering":{"file":"tone","global":%.2f}`, rng.Float64()*2)
		}
		if rng.IntN(2) == 0 {
			return fmt.Sprintf(`{"messages":[{"role":"user","content":"soak %d"}],"max_tokens":%d,"temperature":%.2f%s}`, rng.IntN(1000), 1+rng.IntN(12), rng.Float64(), steer)
		}
		return fmt.Sprintf(`{"prompt":"soak %d","max_tokens":%d,"stop":["zz"]%s}`, rng.IntN(1000), 1+rng.IntN(12), steer)
	}
	pathOf := func(body string) string {
		if strings.Contains(body, `"messages"`) {
			return "/v1/chat/completions"
		}
		return "/v1/completions"
	}
	actions := []func(rng *rand.Rand){
		func(rng *rand.Rand) { // good, not streamed
			count("good")
			b := good(rng)
			status, body, err := do("POST", pathOf(b), b)
			switch {
			case err != nil:
				fail("good request: %v", err)
			case status == 200:
				good200.Add(1)
			case status == 503:
				seen503.Add(1)
			default:
				fail("good request %s: %d %.200q", b, status, body)
			}
		},
		func(rng *rand.Rand) { // good, streamed to the end
			count("stream")
			b := strings.TrimSuffix(good(rng), "}") + `,"stream":true,"stream_options":{"include_usage":true}}`
			req, _ := http.NewRequest("POST", base+pathOf(b), strings.NewReader(b))
			resp, err := hc.Do(req)
			if err != nil {
				fail("stream: %v", err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode == 503 {
				seen503.Add(1)
				io.Copy(io.Discard, resp.Body)
				return
			}
			ev := readSSE(t, resp.Body)
			if resp.StatusCode != 200 || !ev.done || ev.finish == "" || ev.errors != 0 {
				fail("stream %s: %d done %v finish %q errors %d", b, resp.StatusCode, ev.done, ev.finish, ev.errors)
				return
			}
			good200.Add(1)
		},
		func(rng *rand.Rand) { // malformed: a good body cut short or with garbage
			count("malformed")
			b := good(rng)
			if rng.IntN(2) == 0 {
				b = b[:rng.IntN(len(b))]
			} else {
				b += `}"x`
			}
			status, body, err := do("POST", pathOf(b), b)
			expectError("malformed "+b, status, body, err, 400)
		},
		func(rng *rand.Rand) { // wrong types and huge numbers
			count("types")
			common := []string{`"max_tokens":"many"`, `"temperature":"hot"`, `"temperature":1e400`, `"max_tokens":99999999999999999999`,
				`"top_k":1e9`, `"seed":-7`, `"n":5`, `"stop":[1,2]`, `"steering":{"file":"tone","global":1e999}`, `"steering":[]`,
				`"stream":"yes"`, `"top_p":null,"min_p":-1`, `"steering":{"file":"tone","x":1}`}
			path, b := "/v1/completions", `{"prompt":"x",`+common[rng.IntN(len(common))]+`}`
			switch rng.IntN(4) {
			case 0:
				path, b = "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],`+common[rng.IntN(len(common))]+`}`
			case 1:
				path, b = "/v1/chat/completions", []string{`{"messages":"hi"}`, `{"messages":[{"role":1}]}`, `{"messages":[{"role":"user","content":{"a":1}}]}`}[rng.IntN(3)]
			case 2:
				b = []string{`{"prompt":{"a":1}}`, `{"prompt":[1.5]}`, `{"prompt":true}`, `{"prompt":[[1],[2]]}`}[rng.IntN(4)]
			}
			status, body, err := do("POST", path, b)
			expectError("types "+b, status, body, err, 400)
		},
		func(rng *rand.Rand) { // huge fields: over the body limit, or a prompt beyond the context
			count("huge")
			if rng.IntN(2) == 0 {
				status, body, err := do("POST", "/v1/completions", `{"prompt":"`+strings.Repeat("x", 70<<10)+`"}`)
				expectError("huge body", status, body, err, 413)
			} else {
				status, body, err := do("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"`+strings.Repeat("word ", 10000)+`"}]}`)
				expectError("huge prompt", status, body, err, 400)
			}
		},
		func(rng *rand.Rand) { // deep nesting, invalid UTF-8, not an object
			count("weird")
			bodies := []string{strings.Repeat("[", 20000), `{"prompt":"` + "\xff\xfe\xc3" + `","max_tokens":"x"}`, `[]`, `null`, "\x00\x01\x02"}
			status, body, err := do("POST", "/v1/completions", bodies[rng.IntN(len(bodies))])
			expectError("weird", status, body, err, 400)
		},
		func(rng *rand.Rand) { // hostile steering loads
			count("steering")
			paths := []string{"/dev/zero", "/dev/urandom", "zero.gguf", "fifo.gguf", "../../etc/passwd", ".", "missing.gguf"}
			status, body, err := do("POST", "/v1/steering", fmt.Sprintf(`{"name":"h","path":%q}`, paths[rng.IntN(len(paths))]))
			expectError("steering load", status, body, err, 400)
			if strings.Contains(string(body), "root:") {
				fail("steering load leaked file bytes: %s", body)
			}
		},
		func(rng *rand.Rand) { // reads
			count("reads")
			for _, p := range []string{"/health", "/v1/models", "/v1/steering", "/v1/steering/tone"} {
				if status, body, err := do("GET", p, ""); err != nil || status != 200 {
					fail("GET %s: %d %.200q %v", p, status, body, err)
				}
			}
		},
		func(rng *rand.Rand) { // a stream whose client goes away after the first event
			count("disconnect-stream")
			cctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(cctx, "POST", base+"/v1/completions",
				strings.NewReader(`{"prompt":"gone","max_tokens":200,"temperature":0,"stream":true}`))
			resp, err := hc.Do(req)
			if err != nil {
				fail("disconnecting stream: %v", err)
				return
			}
			if resp.StatusCode == 503 {
				seen503.Add(1)
			} else {
				streamsIn.Add(1)
				bufio.NewReader(resp.Body).ReadString('\n')
			}
			cancel()
			resp.Body.Close()
		},
		func(rng *rand.Rand) { // raw TCP: a body cut short, or garbage
			count("disconnect-raw")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fail("dial: %v", err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if rng.IntN(2) == 0 {
				fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\":")
			} else {
				junk := make([]byte, 1+rng.IntN(512))
				for i := range junk {
					junk[i] = byte(rng.IntN(256))
				}
				c.Write(junk)
				c.Write([]byte("\r\n\r\n"))
				c.Read(make([]byte, 256)) // the server may answer 400
			}
		},
	}

	// Warm up, then measure.
	run := func(d time.Duration, workers int) {
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(d)))
				for time.Now().Before(deadline) && failures.Load() < 10 {
					actions[rng.IntN(len(actions))](rng)
				}
			}(w)
		}
		wg.Wait()
	}
	settle := func() {
		t.Helper()
		waitFor(t, "the server to be idle", 10*time.Second, func() bool {
			st := f.srv.Stats()
			return st.SlotsBusy == 0 && st.Queued == 0 && st.Admitted == st.Completed+st.Cancelled+st.Rejected+st.Failed
		})
		tr.CloseIdleConnections()
	}
	run(dur/6, 6)
	settle()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0, rss0 := runtime.NumGoroutine(), rss(t)

	run(dur, 6)
	settle()
	check()
	tr.CloseIdleConnections()
	waitFor(t, "goroutines to settle", 10*time.Second, func() bool { return runtime.NumGoroutine() <= g0+4 })
	runtime.GC()
	runtime.ReadMemStats(&after)

	st := f.srv.Stats()
	var summary []string
	counts.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	rssGrowth := rss(t) - rss0
	t.Logf("actions %v; stats %+v; heap in use %+d KiB, RSS %+d KiB, goroutines %d -> %d", summary, st, heap>>10, rssGrowth>>10, g0, runtime.NumGoroutine())
	if st.Failed != 0 {
		t.Errorf("%d generations failed", st.Failed)
	}
	if st.Rejected != seen503.Load() {
		t.Errorf("server rejected %d requests, clients saw %d 503s", st.Rejected, seen503.Load())
	}
	// +1 for each check() call.
	if done := good200.Load() + 2; st.Completed < done || st.Completed > done+streamsIn.Load() {
		t.Errorf("completed %d, want %d good requests plus at most %d cut streams", st.Completed, done, streamsIn.Load())
	}
	if heap > 16<<20 {
		t.Errorf("Go heap grew by %d KiB", heap>>10)
	}
	if rssGrowth > 96<<20 {
		t.Errorf("RSS grew by %d KiB", rssGrowth>>10)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
