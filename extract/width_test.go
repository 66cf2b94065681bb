package extract

import (
	"strings"
	"testing"

	"github.com/matsteer/matsteer/hooks"
)

// Item 9 of the hardening issue: sites of other widths (Kcur, Vcur with
// grouped-query attention, ffn_up) were listed as hookable, then extraction
// failed with an internal width error. Their widths are probed, and only
// n_embd-wide sites are accepted, with a message naming the usable ones.
func TestSiteWidthsAndCheckWidth(t *testing.T) {
	e := newEnv(t)
	ws, err := SiteWidths(e.model, e.cat)
	if err != nil {
		t.Fatal(err)
	}
	// The random model: n_embd 64, 2 of 4 heads for K/V (32 wide), n_ff 128.
	for site, want := range map[string]int{"l_out": 64, "attn_out": 64, "ffn_out": 64, "Kcur": 32, "Vcur": 32, "ffn_up": 128} {
		if ws[site] != want {
			t.Errorf("width of %s: %d, want %d (all: %v)", site, ws[site], want, ws)
		}
	}
	if err := CheckWidth(e.model, e.cat, hooks.Point{Site: "l_out", Layer: 2}); err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"Kcur", "ffn_up"} {
		err := CheckWidth(e.model, e.cat, hooks.Point{Site: site, Layer: 1})
		if err == nil || !strings.Contains(err.Error(), "not the model's n_embd 64") || !strings.Contains(err.Error(), "l_out") || strings.Contains(err.Error(), "use one of Kcur") {
			t.Errorf("%s: %v", site, err)
		}
	}
	// The probe leaves no capture behind: extraction still works.
	lctx, h := e.context(t, 64, 4)
	if _, err := Run(t.Context(), lctx, h, testExamples(), t.TempDir()+"/a.safetensors", Options{Point: hooks.Point{Site: "l_out", Layer: 1}, Tokens: TokensLast}); err != nil {
		t.Fatal(err)
	}
}
