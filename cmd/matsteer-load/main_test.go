package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/server"
	"github.com/matsteer/matsteer/steer"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(d, 50), percentile(d, 99); p50 != 50 || p99 != 99 {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
	if p := percentile(d[:3], 99); p != 3 {
		t.Fatalf("p99 of 3 samples: %v", p)
	}
	if p := percentile(nil, 50); p != 0 {
		t.Fatalf("empty: %v", p)
	}
}

func TestLoadAgainstServer(t *testing.T) {
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cat, err := hooks.Probe(m)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Model: m, Catalog: cat, Parallel: 2, NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := m.NEmbd()
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, d), GateW: make([]float64, d)}
	for i := range d {
		a.Theta[i] = math.Sin(float64(i))
		a.GateW[i] = 0.05
	}
	path := filepath.Join(t.TempDir(), "tone.gguf")
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: 1, NEmbd: d, ModelArch: "llama", Method: steer.MethodMATSteer, Attributes: []steer.Attribute{a}}
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.LoadSteering("tone", path, false); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	jsonOut := filepath.Join(t.TempDir(), "out.json")
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"--url", ts.URL + "/v1", "--concurrency", "1,3", "--requests", "4", "--max-tokens", "4",
		"--warmup", "1", "--steering", `{"file":"tone","global":2}`, "--json", jsonOut}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if n := strings.Count(out.String(), "\n| "); n != 5 { // header + 4 rows
		t.Fatalf("table:\n%s", out.String())
	}
	var rs []result
	b, _ := os.ReadFile(jsonOut)
	if err := json.Unmarshal(b, &rs); err != nil || len(rs) != 4 {
		t.Fatalf("json: %v %s", err, b)
	}
	for _, r := range rs {
		if r.Errors != 0 || r.Requests != 4 || r.TokensTotal != 16 || r.ReqPerSec <= 0 || r.TTFTP50 <= 0 || r.LatencyP99 < r.LatencyP50 {
			t.Errorf("result %+v", r)
		}
	}
	if st := srv.Stats(); st.Completed != 2*(1+4+4) {
		t.Errorf("server saw %d completions", st.Completed)
	}
	// A failing steering field is reported, not hidden.
	err = run(context.Background(), []string{"--url", ts.URL + "/v1", "--concurrency", "1", "--requests", "1", "--max-tokens", "2",
		"--warmup", "0", "--modes", "steered", "--steering", `{"file":"nope"}`}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("bad steering: %v", err)
	}
}

func TestParseFlagsModes(t *testing.T) {
	cfg, err := parseFlags([]string{"--steering", `{"file":"a"}`, "--mix", `{"file":"a"};{"file":"b","global":2}`}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.modes, ",") != "unsteered,steered,mixed" || len(cfg.mix) != 2 {
		t.Fatalf("modes %v, mix %d", cfg.modes, len(cfg.mix))
	}
	for _, bad := range [][]string{
		{"--mix", `{"file":`},
		{"--modes", "mixed"},
		{"--modes", "steered"},
		{"--modes", "other"},
		{"--concurrency", "0"},
		{"--max-tokens", "0"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
