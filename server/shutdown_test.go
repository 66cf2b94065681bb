package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// sseResult is a parsed event stream.
type sseResult struct {
	events []map[string]any // the JSON events, in order
	done   bool             // it ended with "data: [DONE]"
	finish string           // the last finish_reason seen
	errors int              // error events
	err    error            // reading error
}

// readSSE reads an event stream to its end.
func readSSE(t *testing.T, r io.Reader) sseResult {
	t.Helper()
	var res sseResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if res.done {
			t.Errorf("event after [DONE]: %q", data)
		}
		if data == "[DONE]" {
			res.done = true
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Errorf("event is not JSON: %q", data)
			continue
		}
		if _, ok := v["error"]; ok {
			res.errors++
		}
		if ch, _ := v["choices"].([]any); len(ch) > 0 {
			if fr, _ := ch[0].(map[string]any)["finish_reason"].(string); fr != "" {
				res.finish = fr
			}
		}
		res.events = append(res.events, v)
	}
	res.err = sc.Err()
	return res
}

// response is a whole HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// TestShutdownContract is the contract of an unclean shutdown (the grace
// period ends before the work does), which any scheduler must keep:
//
//   - a running stream ends with a final chunk with a finish_reason and
//     "data: [DONE]", no error event, and the openai client sees a normal end;
//   - a running non-streamed request gets a complete JSON body (a response or
//     a 503 error);
//   - queued requests, streamed or not, get a 503 JSON error with
//     Retry-After;
//   - Serve returns nil, the counters balance, no slot stays busy and no
//     goroutine is left behind.
func TestShutdownContract(t *testing.T) {
	f := newFixture(t, fixtureOpts{modelCtx: 4096, cfg: func(c *Config) { c.Parallel = 3; c.QueueSize = 8 }})
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	g0 := runtime.NumGoroutine()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, 200*time.Millisecond) }()

	post := func(path, body string) (*http.Response, error) {
		return hc.Post(base+path, "application/json", strings.NewReader(body))
	}
	whole := func(path, body string) <-chan response {
		ch := make(chan response, 1)
		go func() {
			resp, err := post(path, body)
			if err != nil {
				ch <- response{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			ch <- response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
		}()
		return ch
	}

	// Three running requests: a raw stream, an openai-go stream, a
	// non-streamed one.
	resp, err := post("/v1/completions", `{"prompt":"running stream","max_tokens":4000,"temperature":0,"stream":true}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first event: %q %v", line, err)
	}
	oc := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0), option.WithHTTPClient(hc))
	os := oc.Chat.Completions.NewStreaming(context.Background(), chatParams("running openai stream", 3000))
	defer os.Close()
	if !os.Next() {
		t.Fatal(os.Err())
	}
	running := whole("/v1/completions", `{"prompt":"running","max_tokens":4000,"temperature":0}`)
	waitFor(t, "three busy slots", 10*time.Second, func() bool { return f.srv.Stats().SlotsBusy == 3 })
	// Two queued requests.
	queuedStream := whole("/v1/completions", `{"prompt":"queued stream","max_tokens":4,"stream":true}`)
	queued := whole("/v1/chat/completions", `{"messages":[{"role":"user","content":"queued"}],"max_tokens":4}`)
	waitFor(t, "two queued requests", 10*time.Second, func() bool {
		select {
		case r := <-queued:
			t.Fatalf("queued request answered early: %d %s %v", r.status, r.body, r.err)
		case r := <-queuedStream:
			t.Fatalf("queued stream answered early: %d %s %v", r.status, r.body, r.err)
		default:
		}
		return f.srv.Stats().Queued == 2
	})

	t0 := time.Now()
	stop()

	// The raw stream: final chunk, [DONE], no error event.
	ev := readSSE(t, br)
	if !ev.done || ev.finish != "length" || ev.errors != 0 || ev.err != nil {
		t.Errorf("running stream: done %v finish %q errors %d err %v (%d events)", ev.done, ev.finish, ev.errors, ev.err, len(ev.events))
	}
	// The openai-go stream ends normally.
	finish := ""
	for os.Next() {
		if ch := os.Current(); len(ch.Choices) > 0 && ch.Choices[0].FinishReason != "" {
			finish = ch.Choices[0].FinishReason
		}
	}
	if os.Err() != nil || finish != "length" {
		t.Errorf("openai stream: finish %q, %v", finish, os.Err())
	}
	// The running non-streamed request: a complete JSON answer.
	r := <-running
	var body map[string]any
	if r.err != nil || json.Unmarshal(r.body, &body) != nil {
		t.Errorf("running request: %d %q %v", r.status, r.body, r.err)
	} else if r.status == 503 {
		if _, _, _ = errorOf(t, body); body["error"].(map[string]any)["code"] != "server_shutting_down" {
			t.Errorf("running request: %s", r.body)
		}
	} else if r.status != 200 || body["choices"] == nil {
		t.Errorf("running request: %d %s", r.status, r.body)
	}
	// Queued requests: 503 with a JSON error.
	for name, ch := range map[string]<-chan response{"queued stream": queuedStream, "queued": queued} {
		r := <-ch
		var body map[string]any
		if r.err != nil || r.status != 503 || json.Unmarshal(r.body, &body) != nil || r.header.Get("Retry-After") == "" ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %q %v %v", name, r.status, r.body, r.header, r.err)
			continue
		}
		if _, typ, _ := errorOf(t, body); typ != "server_overloaded" || body["error"].(map[string]any)["code"] != "server_shutting_down" {
			t.Errorf("%s: %s", name, r.body)
		}
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	st := f.srv.Stats()
	if st.SlotsBusy != 0 || st.Queued != 0 || st.Failed != 0 || st.Cancelled != 5 ||
		st.Admitted != st.Completed+st.Cancelled+st.Rejected+st.Failed {
		t.Errorf("stats after shutdown: %+v", st)
	}
	// New generations are refused from now on.
	if _, j, err := f.srv.parseCompletion([]byte(`{"prompt":"late","max_tokens":2}`)); err != nil {
		t.Fatal(err)
	} else if _, err := f.srv.run(context.Background(), j, func() error { return nil }, func(string) error { return nil }); err != errShuttingDown {
		t.Errorf("run after shutdown: %v", err)
	}
	resp.Body.Close()
	os.Close()
	tr.CloseIdleConnections()
	waitFor(t, "goroutines to settle", 5*time.Second, func() bool { return runtime.NumGoroutine() <= g0 })
}

// TestShutdownGraceServesQueue: within the grace period, running and queued
// requests are served to the end.
func TestShutdownGraceServesQueue(t *testing.T) {
	f := newFixture(t, fixtureOpts{cfg: func(c *Config) { c.Parallel = 1 }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln, time.Minute) }()
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"run","max_tokens":480,"ignore_eos":true,"temperature":0,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	q := make(chan int, 1)
	go func() {
		r, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"queued","max_tokens":4}`))
		if err != nil {
			q <- 0
			return
		}
		r.Body.Close()
		q <- r.StatusCode
	}()
	waitFor(t, "a queued request", 10*time.Second, func() bool { return f.srv.Stats().Queued == 1 })
	stop()
	if ev := readSSE(t, resp.Body); !ev.done || ev.finish != "length" {
		t.Errorf("running stream: %+v", ev)
	}
	if s := <-q; s != 200 {
		t.Errorf("queued request: %d", s)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if st := f.srv.Stats(); st.Completed != 2 || st.Cancelled != 0 {
		t.Errorf("stats %+v", st)
	}
}
