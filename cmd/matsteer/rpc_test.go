package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matsteer/matsteer/internal/testenv"
	"github.com/matsteer/matsteer/llama"
	"github.com/matsteer/matsteer/steer"
)

// freeEndpoint is a 127.0.0.1 port nothing listens on.
func freeEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := l.Addr().String()
	l.Close()
	return ep
}

// withRPC appends --rpc to a command's arguments (model info takes its
// flags before the model path).
func withRPC(args []string, model, rpc string) []string {
	out := append(append([]string{}, args...), "--rpc", rpc)
	if args[0] == "model" {
		out = append(out, model)
	}
	return out
}

// Every command that loads a model takes --rpc and checks it before any
// work: syntax, port range, duplicates, --gpu-layers 0, a server that is
// down (named in the error, within seconds).
func TestRPCFlagErrors(t *testing.T) {
	model := randomModelFile(t)
	down := freeEndpoint(t)
	out := filepath.Join(t.TempDir(), "out")
	commands := map[string][]string{
		"generate":   {"generate", "--model", model, "--prompt", "x"},
		"extract":    {"extract", "--model", model, "--data", filepath.Join(t.TempDir(), "none.jsonl"), "--layer", "1", "--out", out + ".safetensors"},
		"eval":       {"eval", "--model", model, "--task", "jsonl", "--data", filepath.Join(t.TempDir(), "none.jsonl")},
		"calibrate":  {"calibrate", "--model", model, "--steer", filepath.Join(t.TempDir(), "none.gguf"), "--kl-text", filepath.Join(t.TempDir(), "none.txt")},
		"serve":      {"serve", "--model", model},
		"model info": {"model", "info"},
	}
	cases := []struct{ rpc, want string }{
		{"127.0.0.1", `want HOST:PORT`},
		{"127.0.0.1:0", `port "0" is not a number in 1..65535`},
		{"127.0.0.1:65536", `port "65536" is not a number in 1..65535`},
		{"127.0.0.1:+80", `port "+80" is not a number`},
		{":50052", "no host"},
		{"[::1]:50052", "IPv6"},
		{"127.0.0.1:5000,127.0.0.1:5000", "listed twice"},
		{"127.0.0.1:5000,", "empty RPC server"},
		{strings.Repeat("127.0.0.1:1,", 16) + "127.0.0.1:2", "at most 16"},
	}
	for name, args := range commands {
		for _, c := range cases {
			_, _, err := runCLI(t, withRPC(args, model, c.rpc)...)
			if err == nil || !strings.Contains(err.Error(), "--rpc") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s --rpc %q: error %v, want --rpc ... %q", name, c.rpc, err, c.want)
			}
		}
	}
	for _, args := range [][]string{commands["generate"], commands["model info"], commands["serve"]} {
		start := time.Now()
		_, _, err := runCLI(t, withRPC(args, model, down)...)
		if err == nil || !strings.Contains(err.Error(), "RPC server "+down+": cannot connect") {
			t.Errorf("%v with a server that is down: %v", args[:2], err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%v: the check for a server that is down took %v", args[:2], d)
		}
	}
	if _, _, err := runCLI(t, "generate", "--model", model, "--prompt", "x", "--rpc", down, "--gpu-layers", "0"); err == nil || !strings.Contains(err.Error(), "--gpu-layers 0 would put no layer") {
		t.Errorf("--rpc with --gpu-layers 0: %v", err)
	}
	// A listener that never answers the handshake (not an rpc-server, or
	// one busy with another client) is an error too, not a hang.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	if _, _, err := runCLI(t, "generate", "--model", model, "--prompt", "x", "--rpc", l.Addr().String()); err == nil || !strings.Contains(err.Error(), "no answer to the handshake") {
		t.Errorf("silent server: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("silent server: took %v", d)
	}
}

// rpcSteerFile writes a gated one-attribute steering file for the default
// model at l_out-22, a layer the second rpc-server holds in these tests.
func rpcSteerFile(t *testing.T, nEmbd int) string {
	t.Helper()
	a := steer.Attribute{Name: "tone", Gated: true, Theta: make([]float64, nEmbd), GateW: make([]float64, nEmbd), GateB: -0.5}
	for i := range nEmbd {
		a.Theta[i] = 4 * math.Sin(float64(i))
		a.GateW[i] = 0.02 * math.Cos(float64(i))
	}
	f := &steer.File{Version: steer.FileVersion, Site: "l_out", Layer: 22, NEmbd: nEmbd, ModelArch: "llama",
		Method: steer.MethodMATSteer, NormPreserve: true, Attributes: []steer.Attribute{a}}
	path := filepath.Join(t.TempDir(), "steer.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

type auditLine struct {
	Position int                `json:"position"`
	Phase    string             `json:"phase"`
	Token    string             `json:"token"`
	Gates    map[string]float32 `json:"gates"`
}

func readAudit(t *testing.T, path string) []auditLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditLine
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var a auditLine
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, a)
	}
	return out
}

// MAT-Steer through RPC: the default model with 20 layers on two
// rpc-servers, steered at a layer one of them holds, gives the same text
// and the same per-token gates as the local model; model info --rpc says
// where the layers are.
func TestRPCSteeredGenerate(t *testing.T) {
	model := testenv.DefaultModel(t)
	if llama.HasLocalGPU() {
		t.Skip("a local GPU is present: the split would include it (see TestGPUSteeredGenerate)")
	}
	servers := testenv.StartRPCServers(t, 2)
	rpc := servers[0].Endpoint + "," + servers[1].Endpoint
	steerPath := rpcSteerFile(t, 576)
	dir := t.TempDir()
	args := []string{"generate", "--model", model, "-t", "2", "-q", "-n", "24", "--steer", steerPath, "--prompt", "Tell me about your day."}
	localOut, _, err := runCLI(t, append(args, "--audit", filepath.Join(dir, "local.jsonl"))...)
	if err != nil {
		t.Fatal(err)
	}
	rpcOut, rpcErr, err := runCLI(t, append(args, "--audit", filepath.Join(dir, "rpc.jsonl"), "--rpc", rpc, "--gpu-layers", "20")...)
	if err != nil {
		t.Fatal(err)
	}
	if localOut != rpcOut || localOut == "" {
		t.Fatalf("steered text differs:\nlocal %q\nrpc   %q", localOut, rpcOut)
	}
	if !strings.Contains(rpcErr, "rpc: layers 0-10 CPU") || !strings.Contains(rpcErr, servers[1].Endpoint) {
		t.Errorf("no placement line on stderr:\n%s", rpcErr)
	}
	la, ra := readAudit(t, filepath.Join(dir, "local.jsonl")), readAudit(t, filepath.Join(dir, "rpc.jsonl"))
	if len(la) != len(ra) || len(la) < 24 {
		t.Fatalf("audit lines: local %d, rpc %d", len(la), len(ra))
	}
	var maxD float64
	var lo, hi float32 = 1, 0
	for i := range la {
		g, h := la[i].Gates["tone"], ra[i].Gates["tone"]
		maxD = max(maxD, math.Abs(float64(g-h)))
		lo, hi = min(lo, g), max(hi, g)
		if la[i].Position != ra[i].Position || la[i].Token != ra[i].Token {
			t.Fatalf("audit line %d: local %+v, rpc %+v", i, la[i], ra[i])
		}
	}
	t.Logf("gates %.3f..%.3f, max |Δgate| local vs rpc %g", lo, hi, maxD)
	if maxD > 1e-4 {
		t.Fatalf("gates differ by up to %g", maxD)
	}
	if hi-lo < 0.05 {
		t.Fatalf("gates %.3f..%.3f barely vary: the check is weak", lo, hi)
	}

	info, _, err := runCLI(t, "model", "info", "--rpc", rpc, "--gpu-layers", "20", model)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "placement") || !strings.Contains(info, servers[0].Endpoint) || !strings.Contains(info, "+ output RPC") {
		t.Errorf("model info --rpc shows no placement:\n%s", info)
	}
}

// Killing one rpc-server while the CLI generates through it ends the CLI
// within seconds with an error naming that server: ggml's RPC client cannot
// recover, so the process exits (status 1) through llama.OnRPCFailure
// instead of aborting or hanging.
func TestRPCServerKilledMidGeneration(t *testing.T) {
	model := testenv.DefaultModel(t)
	servers := testenv.StartRPCServers(t, 2)
	rpc := servers[0].Endpoint + "," + servers[1].Endpoint
	cmd := exec.Command(os.Args[0], "-test.run=^$", "--", "generate", "--model", model, "-t", "2", "-q", "-n", "2000",
		"--chat=false", "--prompt", "Once upon a time", "--rpc", rpc, "--gpu-layers", "20")
	cmd.Env = append(os.Environ(), "MATSTEER_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// Wait for the first generated text, then kill the second server.
	r := bufio.NewReader(stdout)
	got := make(chan error, 1)
	go func() {
		_, err := r.ReadByte()
		got <- err
		r.WriteTo(new(bytes.Buffer))
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("no output before the kill: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no output within 60 s:\n%s", stderr.String())
	}
	killed := time.Now()
	servers[1].Kill()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after the server was killed:\n%s", stderr.String())
	}
	took := time.Since(killed)
	t.Logf("exited %v after the kill: %v; stderr: %s", took.Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("want a non-zero exit, got %v", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("killed by %v (a crash), want an exit with an error", ws.Signal())
	}
	if want := fmt.Sprintf("lost RPC server %s", servers[1].Endpoint); !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr does not say %q:\n%s", want, stderr.String())
	}
	if took > 10*time.Second {
		t.Fatalf("took %v to exit after the kill", took)
	}
}

// Steering with every layer on the local GPU (skipped without one; `make
// test-vulkan` runs it on Mesa's software Vulkan device): the gates of the
// prompt tokens match the CPU's within 0.15 (the device's own numbers
// differ: on lavapipe l_out rows by up to 5%, gates by up to 0.08, see
// hooks.TestGPUOffloadedModel), and steering changes the device's text
// (the text is shown, not required equal to the CPU's).
func TestGPUSteeredGenerate(t *testing.T) {
	model := testenv.DefaultModel(t)
	if !llama.HasLocalGPU() {
		t.Skip("no local GPU in this build or machine (make VULKAN=1 / CUDA=1)")
	}
	steerPath := rpcSteerFile(t, 576)
	dir := t.TempDir()
	// Strength 4: this random file at strength 1 moves the text on the CPU
	// but not on lavapipe (a near tie); at 4 it moves both.
	args := []string{"generate", "--model", model, "-t", "2", "-q", "-n", "16", "--steer", steerPath, "--strength", "tone=4", "--prompt", "Tell me about your day."}
	localOut, _, err := runCLI(t, append(args, "--audit", filepath.Join(dir, "local.jsonl"))...)
	if err != nil {
		t.Fatal(err)
	}
	gpuOut, _, err := runCLI(t, append(args, "--audit", filepath.Join(dir, "gpu.jsonl"), "--gpu-layers", "-1")...)
	if err != nil {
		t.Fatal(err)
	}
	if localOut != gpuOut {
		t.Logf("steered text differs:\nlocal %q\ngpu   %q", localOut, gpuOut)
	}
	plainArgs := []string{"generate", "--model", model, "-t", "2", "-q", "-n", "16", "--gpu-layers", "-1", "--prompt", "Tell me about your day."}
	if plain, _, err := runCLI(t, plainArgs...); err != nil {
		t.Fatal(err)
	} else if plain == gpuOut {
		t.Fatalf("steering changed nothing on the GPU: %q", plain)
	}
	la, ga := readAudit(t, filepath.Join(dir, "local.jsonl")), readAudit(t, filepath.Join(dir, "gpu.jsonl"))
	var maxD float64
	n := 0
	for i := 0; i < len(la) && i < len(ga) && la[i].Phase == "prompt"; i++ {
		if ga[i].Phase != "prompt" || ga[i].Position != la[i].Position {
			t.Fatalf("audit line %d: local %+v, gpu %+v", i, la[i], ga[i])
		}
		maxD = max(maxD, math.Abs(float64(la[i].Gates["tone"]-ga[i].Gates["tone"])))
		n++
	}
	t.Logf("%d prompt tokens: max |Δgate| cpu vs gpu %g", n, maxD)
	if n < 5 || maxD > 0.15 {
		t.Fatalf("%d prompt tokens compared, gates differ by up to %g", n, maxD)
	}
}
