package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/matsteer/matsteer/eval"
)

func calibrateCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runCommand(t, "calibrate", args...)
}

func TestCalibrateCommand(t *testing.T) {
	f := newEvalFixture(t)
	out := f.dir + "/cal.json"
	stdout, _, err := calibrateCLI(t, "-m", f.model, "--steer", f.steerFile, "--kl-text", f.text, "--max-kl", "0.05", "--grid", "0.25,0.5,1,2,4", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := eval.ReadReport(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Task != "calibrate" || len(rep.Calibrations) != 1 {
		t.Fatalf("report %+v", rep)
	}
	cal := rep.Calibrations[0]
	if cal.Path != f.steerFile || cal.KL > 0.05 || len(cal.Tried) != 5+4 || !strings.Contains(stdout, "s.gguf") {
		t.Errorf("calibration %+v\n%s", cal, stdout)
	}
	for _, p := range cal.Tried {
		if p.Alpha > cal.Alpha && p.KL <= 0.05 {
			t.Errorf("α=%g within budget but %g chosen", p.Alpha, cal.Alpha)
		}
	}

	// The tail budget: the 99th percentile measured at α=1 (mean budget
	// not binding) puts α in [1, 2), bound by the tail.
	var p99 float64
	for _, p := range cal.Tried {
		if p.Alpha == 1 {
			p99 = p.KLP99 * 1.0000001
		}
		if !(p.KLP99 <= p.KLMax) || p.KLMax <= 0 {
			t.Errorf("tried %+v: want 0 < p99 <= max", p)
		}
	}
	out2 := f.dir + "/cal2.json"
	stdout, _, err = calibrateCLI(t, "-m", f.model, "--steer", f.steerFile, "--kl-text", f.text, "--max-kl", "100",
		"--max-kl-p99", strconv.FormatFloat(p99, 'g', -1, 64), "--grid", "0.25,0.5,1,2,4", "--refine", "2", "--out", out2)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err = eval.ReadReport(out2); err != nil {
		t.Fatal(err)
	}
	cal = rep.Calibrations[0]
	if cal.Alpha < 1 || cal.Alpha >= 2 || cal.KLP99 > p99 || cal.BoundBy != eval.BoundP99 || !strings.Contains(stdout, "bound by the p99 budget") {
		t.Errorf("p99 budget %g: calibration %+v\n%s", p99, cal, stdout)
	}

	// --kl-chat: the unsteered model's replies to the prompts are compared
	// too (alone, or pooled with the texts).
	for _, extra := range [][]string{{"--kl-chat", f.text}, {"--kl-chat", f.text, "--kl-text", f.text}} {
		out3 := f.dir + "/cal3.json"
		_, stderr, err := calibrateCLI(t, append([]string{"-m", f.model, "--steer", f.steerFile, "--kl-chat-tokens", "6", "--grid", "0.5,1,2", "--refine", "0", "--out", out3}, extra...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", extra, err, stderr)
		}
		if rep, err = eval.ReadReport(out3); err != nil {
			t.Fatal(err)
		}
		c := rep.Calibrations[0]
		nTexts := 0
		if len(extra) > 2 {
			nTexts = c.Texts
		}
		if c.Replies != 2 || c.Texts != nTexts || len(extra) > 2 && c.Texts != 2 || c.Positions < 2 ||
			!strings.Contains(stderr, "chat replies") || !strings.Contains(stderr, "α 0.5,1,2 ") || len(c.Tried) != 3 {
			t.Errorf("%v: calibration %+v\n%s", extra, c, stderr)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--steer", f.steerFile}, "needs --kl-text FILE and/or --kl-chat FILE"},
		{[]string{"--steer", f.steerFile, "--kl-chat", f.dir + "/missing.txt"}, "--kl-chat"},
		{[]string{"--steer", f.steerFile, "--kl-chat", f.dir}, "--kl-chat"},
		{[]string{"--steer", f.steerFile, "--kl-chat", "/dev/null"}, "--kl-chat"},
		{[]string{"--steer", f.steerFile, "--kl-chat", f.text, "--kl-chat-tokens", "256"}, "--kl-chat-tokens 256 leaves no room"},
		{[]string{"--steer", f.steerFile, "--kl-chat", f.text, "--kl-chat-tokens", "0"}, "--kl-chat-tokens 0"},
		{[]string{"--steer", f.steerFile, "--kl-chat", f.text, "--out", f.text}, "neutral.txt"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--max-kl-p99", "0"}, "--max-kl-p99 0: out of range"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--max-kl-p99", "-0.5"}, "--max-kl-p99"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--max-kl-p99", "NaN"}, "--max-kl-p99"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--max-kl-p99", "101"}, "--max-kl-p99"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--max-kl", "0"}, "--max-kl"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--max-kl", "-1"}, "--max-kl"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--grid", "2,1"}, "ascending"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--strength", "nosuch=1"}, "nosuch"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.dir + "/missing.txt"}, "missing.txt"},
		{[]string{"--steer", f.wrongSteer, "--kl-text", f.text}, "wide.gguf"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--out", f.dir + "/no/such/dir/x.json"}, "does not exist"},
		{[]string{"--steer", f.steerFile, "--kl-text", f.text, "--strength", "tone=0,style=0"}, "changes nothing"},
	} {
		_, _, err := calibrateCLI(t, append([]string{"-m", f.model}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}
