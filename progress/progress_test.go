package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestBarReportsCountsAndStatus(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, 10, "extract", "tok")
	b.Add(4)
	b.SetStatus("loss=0.5")
	b.Add(6)
	b.Finish()
	out := buf.String()
	for _, want := range []string{"extract", "10/10 tok", "100%", "loss=0.5"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
}

func TestNilBarIsNoop(t *testing.T) {
	var b *Bar
	b.Add(1)
	b.SetStatus("x")
	b.Finish()
}
