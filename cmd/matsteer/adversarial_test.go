package main

// The adversarial suite: every command's flags with out-of-range, wrong-type,
// empty and huge values, and every file argument as something unusable
// (missing, a directory, a FIFO, a device, truncated, the same as another
// argument). Each case must fail with a clear error and leave every
// existing file exactly as it was (hashes before and after). A signal test
// interrupts long runs of train and extract at random points and checks
// that the previous output is intact and no temporary file is left.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/matsteer/matsteer/llama"
)

// TestMain lets the signal tests run this test binary as the matsteer
// command: MATSTEER_TEST_MAIN=1 runs main() with the arguments after
// the first "--".
func TestMain(m *testing.M) {
	if os.Getenv("MATSTEER_TEST_MAIN") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"matsteer"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// advFixture is a directory of valid inputs, existing outputs and
// unusable paths.
type advFixture struct {
	dir                               string
	model, acts, steer, data          string
	text, mcData                      string
	old                               string // an existing output (a steering file)
	missing, subdir, fifo             string
	truncActs, truncSteer, truncModel string
}

func newAdvFixture(t *testing.T) advFixture {
	t.Helper()
	dir := t.TempDir()
	f := advFixture{dir: dir,
		model: filepath.Join(dir, "tiny.gguf"), acts: filepath.Join(dir, "a.safetensors"), steer: filepath.Join(dir, "s.gguf"),
		data: filepath.Join(dir, "d.jsonl"), text: filepath.Join(dir, "neutral.txt"), mcData: filepath.Join(dir, "mc_task.json"),
		old: filepath.Join(dir, "old.gguf"), missing: filepath.Join(dir, "missing.bin"), subdir: filepath.Join(dir, "sub"),
		fifo: filepath.Join(dir, "fifo"), truncActs: filepath.Join(dir, "trunc.safetensors"),
		truncSteer: filepath.Join(dir, "trunc.gguf"), truncModel: filepath.Join(dir, "trunc-model.gguf")}
	m, err := llama.NewRandomModel(llama.DefaultRandomModelConfig(), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SaveToFile(f.model); err != nil {
		t.Fatal(err)
	}
	writeActs(t, f.acts, testMeta("truth"), 10, 10, 1)
	for _, p := range []string{f.steer, f.old} {
		if err := evalSteerFile(m.NEmbd()).WriteFile(p); err != nil {
			t.Fatal(err)
		}
	}
	writeJSONL(t, f.data, 6)
	if err := os.WriteFile(f.text, []byte("A quiet street at dawn.\nThe shop sells bread and tea.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	q := []map[string]any{{"question": "Is ice cold?", "mc1_targets": map[string]int{"Yes.": 1, "No.": 0}, "mc2_targets": map[string]int{"Yes.": 1, "No.": 0}}}
	qb, _ := json.Marshal(q)
	if err := os.WriteFile(f.mcData, qb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(f.fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{f.acts: f.truncActs, f.steer: f.truncSteer, f.model: f.truncModel} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// writeJSONL writes n pairs of labelled examples of one attribute.
func writeJSONL(t *testing.T, path string, n int) {
	t.Helper()
	var b strings.Builder
	words := []string{"the cat", "a dog is", "it is of the", "and to in it", "the a the a", "in it is"}
	for i := 0; i < n; i++ {
		w := words[i%len(words)]
		fmt.Fprintf(&b, `{"attribute": "tone", "label": 1, "prompt": "Q: %s %d\nA:", "response": " the good"}`+"\n", w, i)
		fmt.Fprintf(&b, `{"attribute": "tone", "label": 0, "prompt": "Q: %s %d\nA:", "response": " it bad"}`+"\n", w, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot maps every entry under dir to its content hash (regular files)
// or its kind (anything else).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !d.Type().IsRegular() {
			out[rel] = d.Type().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "created "+k)
		}
	}
	return d
}

// runGuarded runs the CLI in-process with a time limit (a blocking open of
// a FIFO or an endless read of /dev/zero would otherwise hang the suite).
func runGuarded(t *testing.T, limit time.Duration, args ...string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := runCLI(t, args...)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%v: still running after %v (blocked on a FIFO or reading without limit?)", args, limit)
		return nil
	}
}

type advCase struct {
	args []string
	want string // substring of the error
}

// runAdversarial runs every case, requiring an error that contains want
// and no change under f.dir.
func runAdversarial(t *testing.T, f advFixture, cases []advCase) {
	t.Helper()
	for _, c := range cases {
		before := snapshot(t, f.dir)
		err := runGuarded(t, 60*time.Second, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to contain %q", c.args, err, c.want)
		}
		if d := diffSnapshots(before, snapshot(t, f.dir)); len(d) > 0 {
			t.Errorf("%q: files changed: %v", c.args, d)
		}
	}
}

func TestAdversarialFlags(t *testing.T) {
	f := newAdvFixture(t)
	m := []string{"--model", f.model, "-t", "1"}
	gen := func(a ...string) []string {
		return append(append([]string{"generate"}, m...), append([]string{"--prompt", "x"}, a...)...)
	}
	genNoT := func(a ...string) []string {
		return append([]string{"generate", "--model", f.model, "--prompt", "x"}, a...)
	}
	ext := func(a ...string) []string {
		return append(append([]string{"extract"}, m...), append([]string{"--data", f.data, "--layer", "1", "--out", filepath.Join(f.dir, "x.safetensors")}, a...)...)
	}
	trn := func(a ...string) []string {
		return append([]string{"train", "--acts", f.acts, "--out", f.old, "--quiet"}, a...)
	}
	ev := func(a ...string) []string {
		return append(append([]string{"eval"}, m...), append([]string{"--task", "truthfulqa", "--data", f.mcData}, a...)...)
	}
	cal := func(a ...string) []string {
		return append(append([]string{"calibrate"}, m...), append([]string{"--steer", f.steer, "--kl-text", f.text}, a...)...)
	}
	huge := "99999999999999999999999"
	cases := []advCase{
		// model flags, shared by every command that loads a model
		{gen("--ctx", "-1"), "--ctx -1: want a multiple of 256"},
		{gen("--ctx", "0"), "--ctx 0"},
		{gen("--ctx", "100"), "--ctx 100: want a multiple of 256"}, // was silently raised to 256
		{gen("--ctx", "300"), "--ctx 300"},
		{gen("--ctx", "1048576"), "the model's training context is 512"}, // allocated gigabytes, then failed
		{gen("--ctx", huge), "invalid value"},
		{gen("--ctx", "many"), "invalid value"},
		{gen("--ctx", ""), "invalid value"},
		{genNoT("--threads", "0"), "--threads 0: out of range, want 1..1024"},
		{genNoT("--threads", "-4"), "--threads -4"},
		{genNoT("--threads", "100000"), "--threads 100000"},
		{gen("--gpu-layers", "-2"), "--gpu-layers -2: out of range"},
		// generate
		{gen("-n", "-1"), "-n -1: out of range"},
		{gen("-n", "0"), "-n 0"},
		{gen("--temp", "NaN"), "--temp NaN: out of range, want a number in [0, 100]"},
		{gen("--temp", "1e400"), "invalid value"},
		{gen("--temp", "Inf"), "--temp +Inf"},
		{gen("--top-p", "1.5"), "--top-p 1.5: out of range, want a number in [0, 1]"},
		{gen("--min-p", "-0.1"), "--min-p"},
		{gen("--top-k", "-1"), "--top-k -1"},
		{gen("--repeat-penalty", "11"), "--repeat-penalty 11"},
		{gen("--global", "-1"), "--global -1: out of range, want a number in [0, 1000]"},
		{gen("--global", "1e300"), "--global 1e+300"},
		{gen("--seed", "-1"), "invalid value"},
		{gen("--audit", "", "--steer", f.steer), "--audit: empty path"},
		{gen("--audit", f.subdir, "--steer", f.steer), "is a directory"},
		{gen("--audit", f.steer, "--steer", f.steer), "is the same file as the input --steer"},
		{gen("--audit", filepath.Join(f.missing, "a.jsonl"), "--steer", f.steer), "does not exist"},
		// extract
		{ext("--batch", "0"), "--batch 0: out of range, want 1..65536"},
		{ext("--batch", "-8"), "--batch -8"},
		{ext("--batch", "1000000"), "--batch 1000000"},
		{ext("--seqs", "0"), "--seqs 0"},
		{ext("--seqs", "257"), "--seqs 257: out of range, want 1..256"},
		{ext("--limit", "-1"), "--limit -1"},
		{ext("--max-tokens", "-3"), "--max-tokens -3"},
		{ext("--max-tokens", "600"), "--max-tokens 600 is larger than --batch 512"},
		{ext("--layer", "-1"), "--layer -1"},
		{ext("--layer", "9"), "out of range for site"},
		{ext("--ctx", "256"), "--ctx 256 is smaller than --batch 512"},
		{ext("--site", "Kcur"), "not the model's n_embd 64"},
		{ext("--site", "ffn_up"), "rows are 128 wide"},
		{ext("--site", ""), "unknown site"},
		// train
		{trn("--epochs", "0"), "--epochs 0 needs --init"},
		{trn("--epochs", "-1"), "--epochs -1: out of range, want 0..1e6"},
		{trn("--epochs", "-5"), "--epochs -5"},
		{trn("--epochs", huge), "invalid value"},
		{trn("--lr", "0"), "--lr 0: out of range, want a number in (0, 100]"},
		{trn("--lr", "-1e-3"), "--lr"},
		{trn("--lr", "NaN"), "--lr NaN"},
		{trn("--batch", "0"), "--batch 0"},
		{trn("--lambda-pos", "-1"), "--lambda-pos -1"},
		{trn("--lambda-sparse", "Inf"), "--lambda-sparse +Inf"},
		{trn("--lambda-ortho", "1e7"), "--lambda-ortho 1e+07"},
		{trn("--dev-fraction", "1"), "--dev-fraction 1: out of range, want a number in [0, 1)"},
		{trn("--dev-fraction", "-0.1"), "--dev-fraction"},
		{trn("--patience", "-1"), "--patience -1"},
		{trn("--sigma", "1e300"), "out of range: each bandwidth or median scale must be in (0, 1e12]"},
		{trn("--sigma", "-2"), "(0, 1e12]"},
		{trn("--sigma", ""), "--sigma"},
		{trn("--seed", "x"), "invalid value"},
		// eval and calibrate
		{ev("--limit", "-1"), "--limit -1"},
		{ev("--alpha", "-1"), "--alpha -1: out of range, want a number in [0, 1000]"},
		{ev("--alpha", "1,NaN"), "--alpha NaN"},
		{ev("--gate-threshold", "2"), "--gate-threshold 2"},
		{ev("--gate-limit", "-2"), "--gate-limit -2"},
		{ev("--kl-limit", "-2"), "--kl-limit -2"},
		{ev("--kl-max-tokens", "1"), "--kl-max-tokens 1"},
		{ev("--ctx", "256", "--kl-max-tokens", "1000", "--kl-text", f.text), "--kl-max-tokens 1000 is longer than --ctx 256"},
		{cal("--max-kl", "0"), "--max-kl 0: out of range, want a number in (0, 100]"},
		{cal("--max-kl", "-1"), "--max-kl"},
		{cal("--max-kl", "NaN"), "--max-kl NaN"},
		{cal("--grid", "0,1"), "--grid 0"},
		{cal("--refine", "-1"), "--refine -1"},
		{cal("--refine", "1000"), "--refine 1000"},
		{cal("--kl-limit", "-1"), "--kl-limit -1"},
		{cal("--max-kl-p99", "0"), "--max-kl-p99 0: out of range"},
		{cal("--max-kl-p99", "NaN"), "--max-kl-p99 NaN"},
		{ev("--gates", "--gate-tokens", "prompt"), "--gate-tokens \"prompt\": want all or response"},
		{ev("--gates", "--gate-tokens", ""), "--gate-tokens \"\": want all or response"},
		{ev("--gate-tokens", "response"), "--gate-tokens needs --gates"},
		{cal("--max-alpha", "-1"), "--max-alpha -1: out of range"},
		{cal("--max-alpha", "NaN"), "--max-alpha NaN"},
		{cal("--max-alpha", "1e9"), "--max-alpha 1e+09: out of range"},
		{gen("-n", "99999999"), "-n 99999999: out of range"},
		{trn("--lambda-neutral", "-1"), "--lambda-neutral -1: out of range"},
		{trn("--gate-bias-init", "-101"), "--gate-bias-init -101: out of range"},
		{trn("--gate-bias-init", "NaN"), "--gate-bias-init NaN"},
		{trn("--gate-shift", "-1"), "--gate-shift -1: out of range"},
		{trn("--gate-shift", "51"), "--gate-shift 51: out of range"},
		{trn("--gate-shift", "2", "--method", "pca"), "--gate-shift needs --method mat-steer"},
		{trn("--shared-tol", "1"), "--shared-tol 1: out of range"},
		{trn("--shared-tol", "-0.1"), "--shared-tol -0.1: out of range"},
		{ev("--resamples", "-1"), "--resamples -1: out of range, want 100..1e6"},
		{ev("--gen-tokens", "0"), "--gen-tokens 0: out of range, want 1..4096"},
		{ev("--gen-limit", "-1"), "--gen-limit -1: out of range"},
		{ev("--resamples", "99999999"), "--resamples 99999999: out of range"},
		{[]string{"data", "pull", "--stall-timeout", "0"}, "--stall-timeout 0s: want 1s..1h"},
		// cvec conversion
		{[]string{"export-cvec", "--global", "-2", f.steer, filepath.Join(f.dir, "c.gguf")}, "--global -2"},
		{[]string{"import-cvec", "--layer", "-1", f.steer, filepath.Join(f.dir, "c.gguf")}, "--layer -1"},
	}
	runAdversarial(t, f, cases)
}

func TestAdversarialFiles(t *testing.T) {
	f := newAdvFixture(t)
	m := []string{"--model", f.model, "-t", "1"}
	newOut := filepath.Join(f.dir, "new.gguf")
	// Gate data of whole texts: nothing for --gate-tokens response to count.
	textGates := filepath.Join(f.dir, "text-gates.jsonl")
	if err := os.WriteFile(textGates, []byte(`{"attribute": "tone", "label": 1, "text": "Fine, thanks."}`+"\n"+`{"attribute": "tone", "label": 0, "text": "Go away."}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []advCase{
		{append(append([]string{"eval"}, m...), "--task", "truthfulqa", "--data", f.mcData, "--split", "all", "--steer", f.steer, "--gates", "--gate-data", textGates, "--gate-tokens", "response"), "text-gates.jsonl:1 has no response to count"},
		// model
		{[]string{"generate", "--model", f.missing, "--prompt", "x"}, "no such file"},
		{[]string{"generate", "--model", f.subdir, "--prompt", "x"}, "directory"},
		{[]string{"generate", "--model", f.fifo, "--prompt", "x"}, "FIFO"},
		{[]string{"generate", "--model", "/dev/zero", "--prompt", "x"}, "/dev/zero"},
		{[]string{"generate", "--model", f.truncModel, "--prompt", "x"}, "trunc-model.gguf"},
		{[]string{"model", "info", f.fifo}, "FIFO"},
		// steering files
		{append(append([]string{"generate"}, m...), "--prompt", "x", "--steer", f.missing), "no such file"},
		{append(append([]string{"generate"}, m...), "--prompt", "x", "--steer", f.fifo), "FIFO"},
		{append(append([]string{"generate"}, m...), "--prompt", "x", "--steer", "/dev/zero"), "/dev/zero"},
		{append(append([]string{"generate"}, m...), "--prompt", "x", "--steer", f.truncSteer), "trunc.gguf"},
		{[]string{"inspect", f.subdir}, "directory"},
		{[]string{"inspect", "/dev/zero"}, "/dev/zero"},
		{[]string{"inspect", f.truncSteer}, "trunc.gguf"},
		// activation files and train outputs
		{[]string{"train", "--acts", f.missing, "--out", newOut}, "no such file"},
		{[]string{"train", "--acts", f.subdir, "--out", newOut}, "directory"},
		{[]string{"train", "--acts", f.fifo, "--out", newOut}, "FIFO"},
		{[]string{"train", "--acts", "/dev/zero", "--out", newOut}, "/dev/zero"},
		{[]string{"train", "--acts", f.truncActs, "--out", newOut}, "trunc.safetensors"},
		{[]string{"train", "--acts", f.acts, "--out", f.acts}, "--out " + f.acts + " is the same file as the input --acts"},
		{[]string{"train", "--acts", f.acts, "--out", f.old, "--log", f.old}, "--log " + f.old + " is the same file as --out " + f.old},
		{[]string{"train", "--acts", f.acts, "--out", f.old, "--plot", f.steer}, "unsupported plot format \".gguf\""}, // emptied the file
		{[]string{"train", "--acts", f.acts, "--out", f.old, "--plot", f.old + ".png", "--log", f.old + ".png"}, "is the same file as --log"},
		{[]string{"train", "--acts", f.acts, "--out", ""}, "--out: empty path"},
		{[]string{"train", "--acts", f.acts, "--out", f.subdir}, "is a directory"},
		{[]string{"train", "--acts", f.acts, "--out", f.fifo}, "is a named pipe (FIFO)"},
		{[]string{"train", "--acts", f.acts, "--out", "/dev/null"}, "character device"},
		{[]string{"train", "--acts", f.acts, "--out", filepath.Join(f.missing, "s.gguf")}, "does not exist"},
		{[]string{"train", "--acts", f.acts, "--out", filepath.Join(f.acts, "s.gguf")}, "not a directory"},
		// extract: outputs are checked before the model loads (a missing
		// model would otherwise be reported first)
		{[]string{"extract", "--model", f.missing, "--data", f.data, "--layer", "1", "--out", f.data}, "--out " + f.data + " is the same file as the input --data"},
		{[]string{"extract", "--model", f.missing, "--data", f.data, "--layer", "1", "--out", f.model}, "no such file"},
		{append(append([]string{"extract"}, m...), "--data", f.data, "--layer", "1", "--out", f.model), "is the same file as the input --model"},
		{[]string{"extract", "--model", f.missing, "--data", f.data, "--layer", "1", "--out", filepath.Join(f.missing, "a")}, "does not exist"},
		{append(append([]string{"extract"}, m...), "--data", f.fifo, "--format", "jsonl", "--layer", "1", "--out", newOut), "FIFO"},
		{append(append([]string{"extract"}, m...), "--data", "/dev/zero", "--format", "jsonl", "--layer", "1", "--out", newOut), "/dev/zero"},
		{append(append([]string{"extract"}, m...), "--data", f.missing, "--layer", "1", "--out", newOut), "no such file"},
		// eval, calibrate
		{[]string{"eval", "--model", f.missing, "--task", "truthfulqa", "--data", f.mcData, "--plot", f.steer}, "unsupported plot format"},
		{[]string{"eval", "--model", f.missing, "--task", "truthfulqa", "--data", f.mcData, "--out", f.mcData}, "same file as the input --data"},
		{[]string{"eval", "--model", f.missing, "--task", "truthfulqa", "--data", f.mcData, "--out", f.old, "--plot", f.old}, "unsupported plot format"},
		{[]string{"eval", "--model", f.missing, "--task", "truthfulqa", "--data", f.mcData, "--out", filepath.Join(f.missing, "r.json")}, "does not exist"},
		{append(append([]string{"eval"}, m...), "--task", "neutral", "--kl-text", f.fifo), "FIFO"},
		{append(append([]string{"eval"}, m...), "--task", "neutral", "--kl-text", "/dev/zero"), "/dev/zero"},
		{[]string{"calibrate", "--model", f.missing, "--steer", f.steer, "--kl-text", f.text, "--out", f.text}, "same file as the input --kl-text"},
		{[]string{"calibrate", "--model", f.missing, "--steer", f.steer, "--kl-text", f.text, "--out", f.subdir}, "is a directory"},
		// cvec conversion
		{[]string{"export-cvec", f.steer, f.steer}, "OUT " + f.steer + " is the same file as the input IN"},
		{[]string{"export-cvec", f.steer, f.subdir}, "is a directory"},
		{[]string{"export-cvec", f.fifo, newOut}, "FIFO"},
		{[]string{"import-cvec", f.steer, f.old, f.steer}, "same file as the input IN"},
		{[]string{"import-cvec", "/dev/zero", newOut}, "/dev/zero"},
	}
	runAdversarial(t, f, cases)
}

// Item 3: --batch below --seqs (default 16) aborted in a llama.cpp
// assertion; the sequences per batch are now capped by the batch size.
// Item 9: extract of an advertised but not n_embd-wide site.
func TestExtractSmallBatchAndSiteWidths(t *testing.T) {
	f := newAdvFixture(t)
	out := filepath.Join(f.dir, "x.safetensors")
	for _, batch := range []string{"8", "1"} {
		_, stderr, err := runCLI(t, "extract", "--model", f.model, "-t", "2", "--data", f.data, "--layer", "1", "--batch", batch, "--tokens", "last", "--out", out)
		if err != nil {
			t.Fatalf("--batch %s: %v\n%s", batch, err, stderr)
		}
	}
	info, _, err := runCLI(t, "model", "info", f.model)
	if err != nil {
		t.Fatal(err)
	}
	var sites, other string
	for _, line := range strings.Split(info, "\n") {
		switch {
		case strings.HasPrefix(line, "hook sites"):
			sites = line
		case strings.HasPrefix(line, "other tensors"):
			other = line
		}
	}
	if !strings.Contains(sites, "l_out[0..3]") || strings.Contains(sites, "Kcur") || strings.Contains(sites, "ffn_up") {
		t.Errorf("hook sites: %q", sites)
	}
	if !strings.Contains(other, "Kcur[0..3] (32 wide)") || !strings.Contains(other, "ffn_up[0..3] (128 wide)") {
		t.Errorf("other tensors: %q", other)
	}
}

// Signals at random points of a long train or extract: the previous output
// stays intact and no temporary file is left.
func TestSignalsKeepPreviousOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	f := newAdvFixture(t)
	bigActs := filepath.Join(f.dir, "big.safetensors")
	writeActs(t, bigActs, testMeta("truth", "tox"), 400, 400, 7)
	bigData := filepath.Join(f.dir, "big.jsonl")
	writeJSONL(t, bigData, 3000)
	extractOut := filepath.Join(f.dir, "old.safetensors")
	writeActs(t, extractOut, testMeta("x"), 3, 3, 9)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	runs := []struct {
		name string
		out  string
		args []string
	}{
		{"train", f.old, []string{"train", "--acts", bigActs, "--out", f.old, "--epochs", "1000000", "--quiet", "--log", filepath.Join(f.dir, "log.json")}},
		{"extract", extractOut, []string{"extract", "--model", f.model, "-t", "1", "--data", bigData, "--layer", "1", "--batch", "16", "--out", extractOut}},
	}
	for _, r := range runs {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			before := snapshot(t, f.dir)
			cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, r.args...)...)
			cmd.Env = append(os.Environ(), "MATSTEER_TEST_MAIN=1")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			delay := time.Duration(300+rng.IntN(1500)) * time.Millisecond
			time.Sleep(delay)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("%s: no exit 60s after %v", r.name, sig)
			}
			code := cmd.ProcessState.ExitCode()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == sig {
				t.Logf("%s: %v arrived before the handler was installed (after %v)", r.name, sig, delay)
			} else if code != 130 {
				t.Errorf("%s, %v after %v: exit %d (want 130, interrupted before finishing)\n%s", r.name, sig, delay, code, lastLines(stderr.String(), 5))
			}
			if d := diffSnapshots(before, snapshot(t, f.dir)); len(d) > 0 {
				t.Errorf("%s, %v after %v: %v", r.name, sig, delay, d)
			}
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Every numeric flag of every command (and subcommand) has at least one
// test with a bad value somewhere in this package's tests, so a new flag
// cannot arrive without its range being exercised.
func TestEveryNumericFlagIsExercised(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var tests strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests.Write(b)
	}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			for _, fl := range c.Flags {
				switch fl.(type) {
				case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Float64Flag, *cli.DurationFlag, *cli.IntSliceFlag, *cli.Float64SliceFlag:
				default:
					continue
				}
				found := false
				for _, n := range fl.Names() {
					found = found || strings.Contains(tests.String(), `"`+flagSpelling(n)+`"`)
				}
				if !found {
					t.Errorf("%s%s: numeric flag %s has no test with a bad value", prefix, c.Name, flagSpelling(fl.Names()[0]))
				}
			}
			walk(prefix+c.Name+" ", c.Subcommands)
		}
	}
	walk("", newApp().Commands)
}
