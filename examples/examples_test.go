// Package examples_test builds the example programs of examples/ and runs
// them on the default model.
package examples_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matsteer/matsteer"
	"github.com/matsteer/matsteer/internal/testenv"
)

var programs = []string{"chat", "trainapply", "httpsteer"}

// build compiles every example program into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the examples: %v", err)
	}
	dir := t.TempDir()
	for _, p := range programs {
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, p), "./examples/"+p)
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./examples/%s: %v\n%s", p, err, out)
		}
	}
	return dir
}

// TestExamplesAreSmall keeps the example programs readable at a glance.
func TestExamplesAreSmall(t *testing.T) {
	for _, p := range programs {
		src, err := os.ReadFile(filepath.Join(p, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(src, []byte("\n")); n > 70 {
			t.Errorf("examples/%s/main.go has %d lines; keep an example under about 60", p, n)
		}
		if !bytes.Contains(src, []byte("\npackage main\n")) {
			t.Errorf("examples/%s/main.go is not a documented package main", p)
		}
	}
}

// run runs bin with args and stdin, failing the test on error.
func run(t *testing.T, stdin string, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestExamples builds the three programs and runs them on the default
// model: trainapply trains a steering file on the demo data, chat and
// httpsteer use it.
func TestExamples(t *testing.T) {
	dir := build(t)
	model := testenv.DefaultModel(t)
	steerFile := filepath.Join(t.TempDir(), "steer.gguf")

	out := run(t, "", filepath.Join(dir, "trainapply"), "-model", model, "-data", "demo/data/demo.jsonl", "-out", steerFile)
	t.Logf("trainapply:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "wrote ") || !strings.Contains(lines[0], "positivity") ||
		!strings.HasPrefix(lines[1], "unsteered: ") || !strings.HasPrefix(lines[2], "steered (") {
		t.Fatalf("trainapply printed %q, want the file written, then an unsteered and a steered reply", out)
	}
	plain, steered := strings.TrimPrefix(lines[1], "unsteered: "), lines[2][strings.Index(lines[2], ": ")+2:]
	if len(strings.Fields(plain)) < 3 || len(strings.Fields(steered)) < 3 || plain == steered {
		t.Errorf("unsteered %q and steered %q: want two different replies", plain, steered)
	}
	m, err := matsteer.Open(model, matsteer.Options{Threads: 1, NCtx: 256, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.LoadSteering(steerFile)
	m.Close()
	if err != nil {
		t.Fatalf("the steering file trainapply wrote: %v", err)
	}

	out = run(t, "Hello!\nWhat is your favourite colour?\n", filepath.Join(dir, "chat"), "-model", model, "-steer", steerFile, "-strength", "positivity=2")
	if n := strings.Count(out, "> "); n != 3 || len(strings.Fields(out)) < 6 {
		t.Errorf("chat printed %q, want two replies and three prompts", out)
	}

	testHTTP(t, filepath.Join(dir, "httpsteer"), model, steerFile)
}

func testHTTP(t *testing.T, bin, model, steerFile string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-model", model, "-steer", steerFile, "-addr", addr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	get := func(q url.Values) (int, string) {
		resp, err := http.Get("http://" + addr + "/generate?" + q.Encode())
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body := get(url.Values{"prompt": {"How was your day?"}, "strength": {"positivity=2,formality=0"}, "global": {"1"}})
		if code == http.StatusOK {
			if len(strings.Fields(body)) < 3 {
				t.Errorf("httpsteer answered %q, want a reply", body)
			}
			break
		}
		if code != 0 || time.Now().After(deadline) {
			t.Fatalf("httpsteer: %d %s\nserver log:\n%s", code, body, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := get(url.Values{"prompt": {"Hi"}, "strength": {"positivty=2"}}); code != http.StatusBadRequest || !strings.Contains(body, "unknown attribute") {
		t.Errorf("a misspelt attribute: %d %q, want 400 naming it", code, body)
	}
}
