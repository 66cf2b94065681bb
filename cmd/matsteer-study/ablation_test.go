package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/eval"
)

// fakeMatsteer writes a stand-in for the matsteer binary: it logs every
// command line to log and writes its --out file, copied from fixtures
// when a file of that name is there ("made" otherwise).
func fakeMatsteer(t *testing.T, dir, fixtures, log string) string {
	t.Helper()
	bin := filepath.Join(dir, "fake-matsteer")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\nout=\"\"; prev=\"\"\nfor a in \"$@\"; do if [ \"$prev\" = \"--out\" ]; then out=$a; fi; prev=$a; done\n" +
		"b=$(basename \"$out\")\nif [ -f \"" + fixtures + "/$b\" ]; then cp \"" + fixtures + "/$b\" \"$out\"; else echo made > \"$out\"; fi\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// fakeStudyDirs makes a test directory with a work folder, a fixtures
// folder for fakeMatsteer and the path of its command log.
func fakeStudyDirs(t *testing.T) (dir, work, fixtures, log string) {
	t.Helper()
	dir = t.TempDir()
	work, fixtures, log = filepath.Join(dir, "work"), filepath.Join(dir, "fixtures"), filepath.Join(dir, "log")
	for _, d := range []string{work, fixtures} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, work, fixtures, log
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAblations runs the ablation stage against a stand-in binary and
// checks the commands it issues (the chat replies at the chosen layer,
// training with them as neutral rows and otherwise the selective
// setting's rows and flags, the sharpened copy of the selective file, the
// variants' own calibration, the selective file and the variants side by
// side on the test items and in the retention pass), what it reads back,
// and the section it writes.
func TestAblations(t *testing.T) {
	dir, work, fixtures, log := fakeStudyDirs(t)
	c := config{bin: fakeMatsteer(t, dir, fixtures, log), threads: 2, work: work, data: filepath.Join(dir, "data"), tokens: "response",
		maxKL: 0.1, maxKLP99: 0.6, maxAlpha: 64, klDev: "dev.txt", klChat: "chat-dev.txt", neutral: "neutral.txt",
		genPrompts: "prompts.txt", genTokens: 48, chatNeutral: "chat-train.txt", gateShift: 2, selective: true,
		trainItems: map[string]int{"truthfulqa": 0, "bbq": 0, "toxigen": 0}, testItems: map[string]int{"truthfulqa": 0, "bbq": 0, "toxigen": 0}}
	for _, task := range tasks { // every item of the train part: no dataset is read
		trainParts[c.data+"|"+task+"|0"] = nil
	}
	sel := filepath.Join(work, "mat-steer-selective-L14.gguf")
	variant := filepath.Join(work, "mat-steer-selective-chat-L14.gguf")
	sharp := filepath.Join(work, "mat-steer-selective-sharp-L14.gguf")
	best := map[string]choice{selectiveFamily: {file: sel, alpha: 2.38}, "pca": {file: filepath.Join(work, "pca-L10.gguf"), alpha: 1}}
	specs := map[string]fileSpec{sel: {method: "mat-steer", lambda: selectiveSetting, layer: 14, tokens: "all"}}

	// Fixtures: the variant's calibration, the test reports (the main
	// test's item counts) and the retention report.
	if got := c.ablationTag(); got != "-chat-neutral-sharp2" {
		t.Fatalf("ablation tag %q", got)
	}
	writeJSON(t, filepath.Join(fixtures, "calibration-kl0.1-p99-0.6-chat-chat-neutral-sharp2.json"),
		eval.Report{Calibrations: []eval.Calibration{{Path: variant, Alpha: 3.36}, {Path: sharp, Alpha: 9.5}}})
	test := map[string]*eval.Report{}
	for _, task := range tasks {
		rep := testReport(task, []row{{eval.NoneName, "", "", 0.4}, {"chat", "mat-steer", variant, 0.55}, {"sharp", "mat-steer", sharp, 0.6}, {"sel", "mat-steer", sel, 0.5}}, 0.01)
		writeJSON(t, filepath.Join(fixtures, c.testName(task, c.ablationTag())), rep)
		test[task] = &eval.Report{Task: task, NItems: rep.NItems}
	}
	writeJSON(t, filepath.Join(fixtures, "retention-kl0.1-p99-0.6-chat-chat-neutral-sharp2.json"),
		eval.Report{Retention: &eval.RetentionReport{Results: []eval.RetentionResult{{Name: "chat", KL: 0.0123, KLP99: 0.2, KLMax: 1}}}})

	ab, reports, err := c.ablations(best, specs, test)
	if err != nil {
		t.Fatal(err)
	}
	if len(ab.variants) != 2 || ab.variants[0].file != variant || ab.variants[0].alpha != 3.36 || ab.variants[1].file != sharp || ab.variants[1].alpha != 9.5 ||
		len(ab.test) != len(tasks) || ab.ret == nil || len(reports) != 5 {
		t.Fatalf("ablation %+v, %d reports", ab, len(reports))
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	cmds := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []string{
		"extract --data " + filepath.Join(c.data, "truthfulqa") + " --split train --layer 14 --tokens all",
		"extract --chat-replies chat-train.txt --reply-tokens 48 --layer 14 --out " + filepath.Join(work, "acts-chat-replies-L14.safetensors"),
		"train --method mat-steer --out " + variant + " --quiet --lambda-pos 9 --lambda-sparse 0.9 --lambda-ortho 0.1 --shared neutral --shared-tol 0.05 --acts ",
		"train --method mat-steer --init " + sel + " --epochs 0 --gate-shift 2 --out " + sharp + " --quiet --acts " + filepath.Join(work, "acts-all-L14-truthfulqa-all.safetensors"),
		"calibrate --kl-text dev.txt --max-kl 0.1 ",
		"eval --task truthfulqa ",
		"eval --task bbq ",
		"eval --task toxigen ",
		"eval --task neutral --kl-text neutral.txt --out " + filepath.Join(work, "retention-kl0.1-p99-0.6-chat-chat-neutral-sharp2.json") +
			" --steer " + variant + "@3.36 --steer " + sharp + "@9.5 --steer " + sel + "@2.38 --gen-prompts prompts.txt --gen-tokens 48 --kl-chat prompts.txt",
	}
	var order []string // the commands matching want, in log order
	for _, cmd := range cmds {
		for _, w := range want {
			if strings.HasPrefix(cmd, w) {
				order = append(order, w)
			}
		}
	}
	if strings.Join(order, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands\n%s\nwant, in this order, lines starting with\n%s", data, strings.Join(want, "\n"))
	}
	for _, cmd := range cmds {
		switch {
		case strings.HasPrefix(cmd, "train ") && strings.Contains(cmd, "--out "+variant):
			if !strings.HasSuffix(cmd, "--neutral-acts "+filepath.Join(work, "acts-chat-replies-L14.safetensors")) {
				t.Errorf("training without the chat replies as neutral rows: %s", cmd)
			}
		case strings.HasPrefix(cmd, "calibrate "):
			if !strings.Contains(cmd, "--kl-chat chat-dev.txt --steer "+variant+" --steer "+sharp+" ") || strings.Contains(cmd, sel) {
				t.Errorf("calibration of the variants alone under the study's budget: %s", cmd)
			}
		case strings.HasPrefix(cmd, "eval --task truthfulqa"):
			if !strings.Contains(cmd, "--gates --gate-limit 120 ") || !strings.Contains(cmd, "--steer "+variant+"@3.36 --steer "+sharp+"@9.5 --steer "+sel+"@2.38 ") ||
				!strings.Contains(cmd, "--split-seed 0") {
				t.Errorf("test pass: %s", cmd)
			}
		}
	}

	// The same stage again: every step is cached.
	before := len(cmds)
	if _, _, err := c.ablations(best, specs, test); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(log)
	if n := len(strings.Split(strings.TrimSpace(string(data)), "\n")); n != before {
		t.Errorf("a second run issued %d more commands, want every step cached", n-before)
	}

	var b strings.Builder
	writeAblation(&b, ab)
	out := b.String()
	for _, want := range []string{
		"## Ablations of the selective setting",
		"- mat-steer-selective-chat (mat-steer-selective-chat-L14, α=3.36): trained again with the unsteered model's greedy chat replies (48 tokens) to the prompts of chat-train.txt",
		"- mat-steer-selective-sharp (mat-steer-selective-sharp-L14, α=9.5): the selective file with every gate bias lowered by 2 ",
		"| mat-steer-selective-chat | mat-steer-selective-chat-L14, α=2 |",
		"| mat-steer-selective-sharp | mat-steer-selective-sharp-L14, α=2 |",
		"| mat-steer-selective | mat-steer-selective-L14, α=2 |",
		"| mat-steer-selective-sharp − mat-steer-selective |",
		"| 0.012 | 0.20 / 1.00 |", // the variant's retention
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ablation section lacks %q:\n%s", want, out)
		}
	}

	// A study whose selective family was not chosen, or whose test items
	// differ, fails with a clear error.
	if _, _, err := c.ablations(map[string]choice{"pca": best["pca"]}, specs, test); err == nil || !strings.Contains(err.Error(), "no mat-steer-selective condition") {
		t.Errorf("no selective condition: %v", err)
	}
	test["bbq"].NItems++
	if _, _, err := c.ablations(best, specs, test); err == nil || !strings.Contains(err.Error(), "test items") {
		t.Errorf("other test items: %v", err)
	}
	test["bbq"].NItems--
	// A calibration that lacks a variant is an error, not α = 0.
	writeJSON(t, filepath.Join(work, "calibration-kl0.1-p99-0.6-chat-chat-neutral-sharp2.json"),
		eval.Report{Calibrations: []eval.Calibration{{Path: variant, Alpha: 3.36}}})
	if _, _, err := c.ablations(best, specs, test); err == nil || !strings.Contains(err.Error(), "no calibration of mat-steer-selective-sharp-L14.gguf") {
		t.Errorf("calibration without the sharp variant: %v", err)
	}
}

func TestAblationFamiliesAndSeedSummary(t *testing.T) {
	if got := familyOf(&eval.SteeringInfo{Method: "mat-steer", Path: "/w/mat-steer-selective-chat-L14.gguf"}); got != chatNeutralFamily {
		t.Errorf("familyOf(the chat variant) = %q", got)
	}
	if got := familyOf(&eval.SteeringInfo{Method: "mat-steer", Path: "/w/mat-steer-selective-sharp-L14.gguf"}); got != sharpFamily {
		t.Errorf("familyOf(the sharp variant) = %q", got)
	}
	if got := familyOf(&eval.SteeringInfo{Method: "mat-steer", Path: "/w/mat-steer-selective-L14.gguf"}); got != selectiveFamily {
		t.Errorf("familyOf(the selective file) = %q", got)
	}
	sel, chat := "/w/mat-steer-selective-L14.gguf", "/w/mat-steer-selective-chat-L14.gguf"
	mk := func(seed uint64, v float64) *seedRun {
		r := &seedRun{seed: seed, test: map[string]*eval.Report{}, best: map[string]choice{selectiveFamily: {file: sel, alpha: 2}},
			abl: &ablation{variants: []variant{{family: chatNeutralFamily, file: chat, alpha: 3}}, test: map[string]*eval.Report{}}}
		for _, task := range tasks {
			r.test[task] = testReport(task, []row{{eval.NoneName, "", "", 0.4}, {"sel", "mat-steer", sel, 0.5}}, 0.01)
			// The ablation's pass has its own copy of the selective file,
			// which the summary must not take for the main test's.
			r.abl.test[task] = testReport(task, []row{{eval.NoneName, "", "", 0.4}, {"sel", "mat-steer", sel, 0.9}, {"chat", "mat-steer", chat, v}}, 0.01)
		}
		return r
	}
	var b strings.Builder
	if err := seedSummary(&b, []*seedRun{mk(0, 0.6), mk(1, 0.8)}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| mat-steer-selective | 0.500 ± 0.000 (0.500, 0.500) |",
		"| mat-steer-selective-chat | 0.700 ± 0.141 (0.600, 0.800) |",
		"- seed 0: mat-steer-selective = mat-steer-selective-L14 at α=2; ablation mat-steer-selective-chat = mat-steer-selective-chat-L14 at α=3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestFractionPasses runs two data-efficiency passes (two -fraction-methods
// lists) against a stand-in binary: each calibrates and tests only its own
// files under its own tag, the cells are read from its reports, and a
// second run reuses both passes.
func TestFractionPasses(t *testing.T) {
	dir, work, fixtures, log := fakeStudyDirs(t)
	c := config{bin: fakeMatsteer(t, dir, fixtures, log), threads: 2, work: work, data: filepath.Join(dir, "data"), tokens: "response",
		maxKL: 0.1, maxAlpha: 64, klDev: "dev.txt", selective: true, fractions: []float64{0.5, 1},
		testItems: map[string]int{"truthfulqa": 0, "bbq": 0, "toxigen": 0}}
	if err := c.parseFractionMethods([]string{"mean-diff", "pca"}); err != nil {
		t.Fatal(err)
	}
	best := map[string]choice{"mean-diff": {file: filepath.Join(work, "mean-diff-L10.gguf")}, "pca": {file: filepath.Join(work, "pca-L14.gguf")}}
	md, pca := filepath.Join(work, "frac0.5-mean-diff-L10.gguf"), filepath.Join(work, "frac0.5-pca-L14.gguf")
	test := map[string]*eval.Report{}
	for fam, file := range map[string]string{"mean-diff": md, "pca": pca} {
		tag := "-fractions0.5-" + fam
		writeJSON(t, filepath.Join(fixtures, "calibration-kl0.1"+tag+".json"), eval.Report{Calibrations: []eval.Calibration{{Path: file, Alpha: 3}}})
		for _, task := range tasks {
			rep := testReport(task, []row{{eval.NoneName, "", "", 0.4}, {fam, fam, file, 0.6}}, 0.01)
			writeJSON(t, filepath.Join(fixtures, c.testName(task, tag)), rep)
			test[task] = &eval.Report{Task: task, NItems: rep.NItems}
		}
	}
	groups, suffixes := c.fractionPassGroups(best)
	files := []fracFile{{"mean-diff", 0, md}, {"pca", 0, pca}}
	run := func() {
		eff := &efficiency{fractions: c.fractions, fams: c.fractionFamilies(best), cells: map[string][]effCell{"mean-diff": make([]effCell, 2), "pca": make([]effCell, 2)}}
		for g, fams := range groups {
			var group []fracFile
			for _, f := range files {
				if slices.Contains(fams, f.fam) {
					group = append(group, f)
				}
			}
			reports, err := c.fractionPass("-fractions0.5"+suffixes[g], group, best, test, eff)
			if err != nil {
				t.Fatal(err)
			}
			if len(reports) != 1+len(tasks) {
				t.Errorf("pass %v: reports %v", fams, reports)
			}
		}
		for fam, file := range map[string]string{"mean-diff": md, "pca": pca} {
			cell := eff.cells[fam][0]
			if cell.file != file || cell.alpha != 2 || len(cell.metric) != len(tasks) || cell.metric["bbq"] != 0.6 || !cell.sig["bbq"] {
				t.Errorf("%s cell %+v", fam, cell)
			}
		}
	}
	run()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	cmds := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(cmds) != 2*(1+len(tasks)) {
		t.Fatalf("%d commands, want %d:\n%s", len(cmds), 2*(1+len(tasks)), data)
	}
	for _, cmd := range cmds {
		for fam, file := range map[string]string{"mean-diff": md, "pca": pca} {
			other := pca
			if fam == "pca" {
				other = md
			}
			if strings.Contains(cmd, "-fractions0.5-"+fam) && (!strings.Contains(cmd, file) || strings.Contains(cmd, other)) {
				t.Errorf("the %s pass: %s", fam, cmd)
			}
		}
		if strings.HasPrefix(cmd, "eval ") && !strings.Contains(cmd, "@3 ") {
			t.Errorf("not at the calibrated α: %s", cmd)
		}
	}
	run()
	data2, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(data2) != len(data) {
		t.Errorf("the second run was not cached:\n%s", data2[len(data):])
	}
}
