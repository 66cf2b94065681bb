package llama

import (
	"strings"
	"testing"
)

func TestNoLocalGPUErrorSaysWhatIsMissing(t *testing.T) {
	err := NoLocalGPUError("--gpu-layers", -1, "--rpc")
	msg := err.Error()
	if !strings.HasPrefix(msg, "--gpu-layers -1: no GPU in this build or machine") || !strings.Contains(msg, "--rpc") {
		t.Fatalf("message %q", msg)
	}
	if b := GPUBackends(); len(b) == 0 {
		if !strings.Contains(msg, "no GPU backend") || !strings.Contains(msg, "make CUDA=1") {
			t.Errorf("a build without GPU backends: %q", msg)
		}
	} else if !strings.Contains(msg, b[0]) || strings.Contains(msg, "rebuild") {
		t.Errorf("a build with %v: %q", b, msg)
	}
	for _, name := range GPUBackends() {
		if name == "CPU" || name == "RPC" {
			t.Errorf("GPUBackends lists %s", name)
		}
	}
}
