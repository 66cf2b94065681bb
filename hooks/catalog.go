package hooks

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/llama"
)

// Catalog lists the hookable points of a model: every per-layer tensor of
// its compute graph, found by building the graph once (Probe).
type Catalog struct {
	Arch   string
	NLayer int
	NEmbd  int
	sites  map[string][]int // site -> sorted layers where it exists
}

var layerTensorName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_.]*)-([0-9]+)$`)

// Probe builds a throw-away context on m, evaluates one token while
// recording every graph node's name, and returns the per-layer sites.
func Probe(m *llama.Model) (*Catalog, error) {
	h := New(nil)
	defer h.Close()
	h.c.probe = 1
	ctx, err := llama.NewContext(m, llama.ContextParams{NCtx: 256, NBatch: 2, NUBatch: 2, Threads: 1, Hook: h, NoPerf: true})
	if err != nil {
		return nil, fmt.Errorf("probe hook sites: %w", err)
	}
	defer ctx.Close()
	b := llama.NewBatch(2, 1)
	defer b.Close()
	tok := m.Special().BOS
	if tok < 0 || int(tok) >= m.NVocab() {
		tok = 0
	}
	// Two tokens, one output: the last layer's output-only rows are exercised too.
	_ = b.Add(tok, 0, []int{0}, false)
	_ = b.Add(tok, 1, []int{0}, true)
	if err := ctx.Decode(b); err != nil {
		return nil, fmt.Errorf("probe hook sites: %w", err)
	}
	return newCatalog(m.Arch(), m.NLayer(), m.NEmbd(), h.probed), nil
}

func newCatalog(arch string, nLayer, nEmbd int, names []string) *Catalog {
	c := &Catalog{Arch: arch, NLayer: nLayer, NEmbd: nEmbd, sites: map[string][]int{}}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		m := layerTensorName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		layer, err := strconv.Atoi(m[2])
		if err != nil || layer >= nLayer {
			continue
		}
		c.sites[m[1]] = append(c.sites[m[1]], layer)
	}
	for s := range c.sites {
		sort.Ints(c.sites[s])
	}
	return c
}

// Sites lists the site names, sorted.
func (c *Catalog) Sites() []string {
	out := make([]string, 0, len(c.sites))
	for s := range c.sites {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Layers lists the layers where site exists.
func (c *Catalog) Layers(site string) []int { return append([]int(nil), c.sites[site]...) }

// Check validates a point: the site must exist in the model's graph and
// the layer must be one where it exists.
func (c *Catalog) Check(p Point) error {
	layers, ok := c.sites[p.Site]
	if !ok {
		return fmt.Errorf("unknown site %q for this %s model; sites: %s", p.Site, c.Arch, strings.Join(c.Sites(), ", "))
	}
	i := sort.SearchInts(layers, p.Layer)
	if i < len(layers) && layers[i] == p.Layer {
		return nil
	}
	return fmt.Errorf("layer %d out of range for site %q: the %s model has layers %s", p.Layer, p.Site, c.Arch, describeLayers(layers))
}

// Resolve validates and returns the point for site and layer.
func (c *Catalog) Resolve(site string, layer int) (Point, error) {
	p := Point{Site: site, Layer: layer}
	return p, c.Check(p)
}

// describeLayers formats a sorted layer list compactly ("0..29", "0,2,4").
func describeLayers(l []int) string {
	if len(l) == 0 {
		return "none"
	}
	if l[len(l)-1]-l[0] == len(l)-1 {
		return fmt.Sprintf("%d..%d", l[0], l[len(l)-1])
	}
	parts := make([]string, len(l))
	for i, v := range l {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}
