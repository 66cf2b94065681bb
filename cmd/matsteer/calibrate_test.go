package main

import (
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

	for _, tc := range []struct {
		args []string
		want string
	}{
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
