package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matsteer/matsteer/llama"
)

// RPCServerBin returns the path of llama.cpp's rpc-server built by `make`
// (bin/rpc-server), or skips (fails under CI).
func RPCServerBin(t testing.TB) string {
	t.Helper()
	if !llama.SupportsRPC() {
		missing(t, "this llama.cpp build has no RPC backend; run `make` (GGML_RPC=ON)")
	}
	for _, p := range []string{
		filepath.Join(RepoRoot(), "bin", "rpc-server"),
		filepath.Join(RepoRoot(), "third_party", "build", "bin", "ggml-rpc-server"),
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, "rpc-server not built at bin/rpc-server; run `make build`")
	return ""
}

// RPCServer is an rpc-server process started by StartRPCServers.
type RPCServer struct {
	Endpoint string
	cmd      *exec.Cmd
	out      *lockedBuffer
	done     chan struct{}
}

// Kill stops the server at once (SIGKILL) and waits for it to exit.
func (s *RPCServer) Kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// Output is what the server printed so far.
func (s *RPCServer) Output() string { return s.out.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartRPCServers starts n rpc-server processes on 127.0.0.1 at free
// ports, one CPU thread each, and waits until each answers the RPC
// handshake. They are killed when the test ends.
func StartRPCServers(t testing.TB, n int) []*RPCServer {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	bin := RPCServerBin(t)
	servers := make([]*RPCServer, 0, n)
	for range n {
		servers = append(servers, startRPCServer(t, bin))
	}
	return servers
}

func startRPCServer(t testing.TB, bin string) *RPCServer {
	t.Helper()
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s := &RPCServer{Endpoint: fmt.Sprintf("127.0.0.1:%d", port), out: &lockedBuffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port), "-t", "1")
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		go func() { s.cmd.Wait(); close(s.done) }()
		t.Cleanup(s.Kill)
		deadline := time.Now().Add(15 * time.Second)
		for {
			select {
			case <-s.done:
				// The port was taken between Listen and the server's bind.
				if attempt < 3 {
					goto retry
				}
				t.Fatalf("rpc-server on port %d exited:\n%s", port, s.Output())
			default:
			}
			if err := llama.CheckRPCServer(s.Endpoint, 2*time.Second); err == nil {
				return s
			} else if time.Now().After(deadline) {
				t.Fatalf("rpc-server at %s not ready after 15 s: %v\n%s", s.Endpoint, err, s.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	retry:
	}
}
