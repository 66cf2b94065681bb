package main

import (
	"strings"
	"testing"

	"github.com/matsteer/matsteer/steer"
)

func TestStrengthsByFile(t *testing.T) {
	file := func(names ...string) *steer.File {
		f := &steer.File{}
		for _, n := range names {
			f.Attributes = append(f.Attributes, steer.Attribute{Name: n})
		}
		return f
	}
	files := []*steer.File{file("tone", "style"), file("toxicity"), file("tone")}
	own, err := strengthsByFile(map[string]float64{"tone": 2, "toxicity": 0}, files)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]float64{{"tone": 2}, {"toxicity": 0}, {"tone": 2}}
	for i := range want {
		if len(own[i]) != len(want[i]) {
			t.Fatalf("file %d: %v, want %v", i, own[i], want[i])
		}
		for k, v := range want[i] {
			if got, ok := own[i][k]; !ok || got != v {
				t.Errorf("file %d: %v, want %v", i, own[i], want[i])
			}
		}
	}
	_, err = strengthsByFile(map[string]float64{"tone": 1, "humour": 2, "bias": 1}, files)
	if err == nil || !strings.Contains(err.Error(), "bias, humour") || strings.Contains(err.Error(), "tone") {
		t.Errorf("unknown names: %v", err)
	}
	if own, err := strengthsByFile(nil, files); err != nil || len(own) != 3 || len(own[0]) != 0 {
		t.Errorf("no strengths: %v, %v", own, err)
	}
}
