package main

import (
	"strings"
	"testing"
)

// --batch-items is range-checked before any work starts (no data or model
// is read: the paths below do not exist).
func TestEvalBatchItemsRange(t *testing.T) {
	for _, v := range []string{"0", "-1", "4097"} {
		_, _, err := evalCLI(t, "--task", "truthfulqa", "--data", "/nonexistent/data", "--model", "/nonexistent/model.gguf", "--batch-items", v)
		if err == nil || !strings.Contains(err.Error(), "--batch-items "+v+": out of range") {
			t.Errorf("--batch-items %s: error %v", v, err)
		}
	}
}
