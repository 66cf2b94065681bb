package matsteer_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/matsteer/matsteer"
	"github.com/matsteer/matsteer/steer"
)

// TrainOptions.Init warm-starts from a steering file: zero epochs give the
// file's values back, training on moves them, a new attribute is added,
// and the layer and site default to the file's.
func TestTrainInit(t *testing.T) {
	m := openTiny(t, matsteer.Options{}, nil)
	ctx := context.Background()
	ex := func(attr, pos, neg string) []matsteer.Example {
		var out []matsteer.Example
		for _, q := range []string{"How was the trip?", "How is the weather?", "How did it go?", "Was it fun?"} {
			out = append(out,
				matsteer.Example{Attribute: attr, Positive: true, Prompt: "Q: " + q + "\nA:", Response: pos},
				matsteer.Example{Attribute: attr, Positive: false, Prompt: "Q: " + q + "\nA:", Response: neg})
		}
		return out
	}
	cfg := steer.DefaultTrainConfig()
	cfg.Epochs = 3
	old, err := m.Train(ctx, ex("tone", " Lovely, thanks!", " awful."), matsteer.TrainOptions{Layer: 2, Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	zero := steer.DefaultTrainConfig()
	zero.Epochs = 0
	same, err := m.Train(ctx, ex("tone", " Great fun.", " Dreadful."), matsteer.TrainOptions{Init: old, Config: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if same.Layer() != 2 || same.Site() != old.Site() {
		t.Fatalf("warm start at %s-%d, want the file's %s-2", same.Site(), same.Layer(), old.Site())
	}
	a, b := old.File().Attributes[0], same.File().Attributes[0]
	if !slices.Equal(a.Theta, b.Theta) || !slices.Equal(a.GateW, b.GateW) || a.GateB != b.GateB {
		t.Fatal("zero epochs changed the file's values")
	}
	more, err := m.Train(ctx, append(ex("tone", " Great fun.", " Dreadful."), ex("style", " Indeed, sir.", " yeah lol")...),
		matsteer.TrainOptions{Init: old, Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	if got := more.Attributes(); !slices.Equal(got, []string{"tone", "style"}) {
		t.Fatalf("attributes %v, want [tone style]", got)
	}
	if slices.Equal(more.File().Attributes[0].Theta, a.Theta) {
		t.Error("training on did not move the warm-started attribute")
	}
	both := cfg
	both.Init = old.File()
	if _, err := m.Train(ctx, ex("tone", "a", "b"), matsteer.TrainOptions{Init: old, Config: &both}); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("Init twice: %v", err)
	}
	if _, err := m.Train(ctx, ex("tone", "a", "b"), matsteer.TrainOptions{Init: old, Layer: 1, Config: &cfg}); err == nil {
		t.Error("a layer other than the file's was accepted")
	}
}
