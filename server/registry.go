package server

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/internal/safefile"
	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/steer"
)

// validSteerName is the form of a steering file's name in requests.
var validSteerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// steerEntry is one loaded steering file. It is immutable once registered:
// unloading removes it from the registry, while requests that already hold
// it keep using it.
type steerEntry struct {
	name     string
	path     string
	file     *steer.File
	point    hooks.Point
	loadedAt time.Time
	attrs    map[string]bool
	// load numbers this load of the file: a file reloaded under the same
	// name is a different steering for the prompt cache.
	load uint64
}

// registry holds the loaded steering files by name.
type registry struct {
	mu sync.RWMutex
	m  map[string]*steerEntry
}

func (r *registry) get(name string) (*steerEntry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.m[name]
	return e, ok
}

func (r *registry) names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (r *registry) list() []*steerEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*steerEntry, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// put registers e; an existing entry of that name is replaced only when
// replace is set.
func (r *registry) put(e *steerEntry, replace bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[e.name]; ok && !replace {
		return &APIError{Status: http.StatusConflict, Type: errInvalidRequest, Param: "name", Code: "steering_exists",
			Message: fmt.Sprintf("a steering file named %q is already loaded; unload it first or set \"replace\": true", e.name)}
	}
	r.m[e.name] = e
	return nil
}

func (r *registry) remove(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[name]
	delete(r.m, name)
	return ok
}

// SteeringInfo describes a loaded steering file (the items of GET /v1/steering).
type SteeringInfo struct {
	Name         string          `json:"name"`
	Object       string          `json:"object"` // "steering_file"
	Path         string          `json:"path"`
	Site         string          `json:"site"`
	Layer        int             `json:"layer"`
	Method       string          `json:"method"`
	NEmbd        int             `json:"n_embd"`
	ModelArch    string          `json:"model_arch,omitempty"`
	ModelName    string          `json:"model_name,omitempty"`
	NormPreserve bool            `json:"norm_preserve"`
	Attributes   []AttributeInfo `json:"attributes"`
	LoadedAt     int64           `json:"loaded_at"` // Unix seconds
}

// AttributeInfo describes one attribute of a steering file.
type AttributeInfo struct {
	Name  string `json:"name"`
	Gated bool   `json:"gated"`
}

func (e *steerEntry) info() SteeringInfo {
	f := e.file
	si := SteeringInfo{Name: e.name, Object: "steering_file", Path: e.path, Site: f.Site, Layer: f.Layer, Method: f.Method,
		NEmbd: f.NEmbd, ModelArch: f.ModelArch, ModelName: f.ModelName, NormPreserve: f.NormPreserve,
		LoadedAt: e.loadedAt.Unix(), Attributes: make([]AttributeInfo, len(f.Attributes))}
	for i, a := range f.Attributes {
		si.Attributes[i] = AttributeInfo{Name: a.Name, Gated: a.Gated}
	}
	return si
}

// LoadSteering reads the steering file at path, validates it against the
// server's model (intervene.Check) and registers it as name. It is for the
// operator (start-up files): any path, and errors with every detail; HTTP
// loads go through LoadSteeringFromDir. An existing file
// of that name is replaced only when replace is set; requests already
// running keep the file they started with.
func (s *Server) LoadSteering(name, path string, replace bool) (SteeringInfo, error) {
	if !validSteerName.MatchString(name) {
		return SteeringInfo{}, invalid("name", "steering name %q must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	f, err := steer.ReadFile(path)
	if err != nil {
		return SteeringInfo{}, invalid("path", "loading steering file %s: %v", path, err)
	}
	return s.register(name, path, f, replace)
}

// register checks f against the model and registers it as name.
func (s *Server) register(name, path string, f *steer.File, replace bool) (SteeringInfo, error) {
	p, err := intervene.Check(f, s.model, s.cat)
	if err != nil {
		return SteeringInfo{}, invalid("path", "steering file %s does not fit the model: %v", path, err)
	}
	e := &steerEntry{name: name, path: path, file: f, point: p, loadedAt: time.Now(), attrs: map[string]bool{}, load: s.loadSeq.Add(1)}
	for _, a := range f.Attributes {
		e.attrs[a.Name] = true
	}
	if err := s.reg.put(e, replace); err != nil {
		return SteeringInfo{}, err
	}
	s.log.Info("steering file loaded", "name", name, "path", path, "point", p.String(), "attributes", f.AttributeNames())
	return e.info(), nil
}

// UnloadSteering removes the steering file registered as name. Requests
// already using it finish with it.
func (s *Server) UnloadSteering(name string) error {
	if !s.reg.remove(name) {
		return &APIError{Status: http.StatusNotFound, Type: errNotFound, Param: "name", Code: "steering_not_found",
			Message: fmt.Sprintf("no steering file named %q is loaded (loaded: %v)", name, s.reg.names())}
	}
	s.log.Info("steering file unloaded", "name", name)
	return nil
}

// Steering lists the loaded steering files, sorted by name.
func (s *Server) Steering() []SteeringInfo {
	es := s.reg.list()
	out := make([]SteeringInfo, len(es))
	for i, e := range es {
		out[i] = e.info()
	}
	return out
}

// openSteerDir opens Config.SteerDir, which must be an existing directory.
func openSteerDir(dir string) (*os.Root, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	return os.OpenRoot(dir)
}

// runtimeLoadsOff answers POST and DELETE /v1/steering on a server without
// a steering directory, or with read-only steering.
func (s *Server) runtimeLoadsOff(w http.ResponseWriter) bool {
	if s.steerRoot != nil {
		return false
	}
	msg := "loading and unloading steering files at run time is off on this server (start it with --steer-dir DIR to allow loads from DIR)"
	if s.cfg.ReadOnlySteering {
		msg = "loading and unloading steering files is disabled on this server"
	}
	writeError(w, &APIError{Status: http.StatusForbidden, Type: errInvalidRequest, Code: "steering_read_only", Message: msg})
	return true
}

// maxSteerPathLen bounds the path of a runtime load.
const maxSteerPathLen = 1024

// shortQuote quotes a client-supplied string for an error message, cut to a
// readable length.
func shortQuote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// LoadSteeringFromDir loads the steering file at rel, a path relative to
// Config.SteerDir, as LoadSteering does; this is what POST /v1/steering
// does. The file must stay inside the directory, also through symbolic
// links, and be a regular file of at most MaxSteerFileBytes; it is opened
// without blocking (a FIFO cannot hang it). Errors are meant for clients:
// they never contain the file's bytes, and a path that leaves the directory
// gets the same answer whether or not its target exists (the details go to
// the log).
func (s *Server) LoadSteeringFromDir(name, rel string, replace bool) (SteeringInfo, error) {
	if s.steerRoot == nil {
		return SteeringInfo{}, &APIError{Status: http.StatusForbidden, Type: errInvalidRequest, Code: "steering_read_only",
			Message: "this server has no steering directory"}
	}
	if !validSteerName.MatchString(name) {
		return SteeringInfo{}, invalid("name", "steering name %s must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", shortQuote(name))
	}
	switch {
	case rel == "":
		return SteeringInfo{}, invalid("path", "path is required: a steering file's path relative to the server's steering directory")
	case len(rel) > maxSteerPathLen || strings.ContainsRune(rel, 0):
		return SteeringInfo{}, invalid("path", "path is not a valid file name")
	case filepath.IsAbs(rel) || !filepath.IsLocal(rel):
		return SteeringInfo{}, invalid("path", "path %s must be relative to the server's steering directory and stay inside it", shortQuote(rel))
	}
	notFound := invalid("path", "no loadable steering file %s in the server's steering directory", shortQuote(rel))
	fh, err := s.steerRoot.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		s.log.Warn("steering load refused", "path", rel, "error", err)
		return SteeringInfo{}, notFound
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		s.log.Warn("steering load refused", "path", rel, "error", err)
		return SteeringInfo{}, notFound
	}
	if !fi.Mode().IsRegular() {
		return SteeringInfo{}, invalid("path", "%s is not a regular file (it is %s)", shortQuote(rel), safefile.Kind(fi.Mode()))
	}
	if fi.Size() > MaxSteerFileBytes {
		return SteeringInfo{}, invalid("path", "%s is %d bytes, more than the limit of %d bytes for a steering file", shortQuote(rel), fi.Size(), MaxSteerFileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxSteerFileBytes+1))
	if err != nil {
		s.log.Warn("steering load failed", "path", rel, "error", err)
		return SteeringInfo{}, invalid("path", "reading %s failed (details in the server log)", shortQuote(rel))
	}
	if len(data) > MaxSteerFileBytes {
		return SteeringInfo{}, invalid("path", "%s is more than the limit of %d bytes for a steering file", shortQuote(rel), MaxSteerFileBytes)
	}
	f, err := steer.Decode(data)
	if err != nil {
		// Parse errors may quote the file's bytes: they go to the log only.
		s.log.Warn("steering load refused: not a valid steering file", "path", rel, "error", err)
		return SteeringInfo{}, invalid("path", "%s is not a valid matsteer steering file (details in the server log)", shortQuote(rel))
	}
	return s.register(name, rel, f, replace)
}
