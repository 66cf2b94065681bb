package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/matsteer/matsteer/hooks"
	"github.com/matsteer/matsteer/steer"
	"github.com/matsteer/matsteer/steering"
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
// server's model (steering.Check) and registers it as name. An existing file
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
	p, err := steering.Check(f, s.model, s.cat)
	if err != nil {
		return SteeringInfo{}, invalid("path", "steering file %s does not fit the model: %v", path, err)
	}
	e := &steerEntry{name: name, path: path, file: f, point: p, loadedAt: time.Now(), attrs: map[string]bool{}}
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

// resolveSteerPath applies Config.SteerDir to a path given over HTTP: with a
// directory set, the path is taken relative to it and must stay inside it
// (also after following symbolic links).
func (s *Server) resolveSteerPath(path string) (string, error) {
	if path == "" {
		return "", invalid("path", "path is required")
	}
	dir := s.cfg.SteerDir
	if dir == "" {
		return path, nil
	}
	if filepath.IsAbs(path) || !filepath.IsLocal(path) {
		return "", invalid("path", "path %q must be relative to the server's steering directory and stay inside it", path)
	}
	full := filepath.Join(dir, path)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("steering directory: %w", err)
	}
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		if os.IsNotExist(err) {
			return "", invalid("path", "no steering file %q in the server's steering directory", path)
		}
		return "", invalid("path", "steering file %q: %v", path, err)
	}
	if rel, err := filepath.Rel(realDir, real); err != nil || !filepath.IsLocal(rel) {
		return "", invalid("path", "path %q leaves the server's steering directory", path)
	}
	return full, nil
}
