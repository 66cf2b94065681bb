package datasets

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// stratifiedItems returns BBQ-like items in "file order": every item of
// category A, then B, then C (sizes 60, 30, 10), each category's items
// numbered in order.
func stratifiedItems() []Item {
	var items []Item
	for _, c := range []struct {
		name string
		n    int
	}{{"A", 60}, {"B", 30}, {"C", 10}} {
		for i := range c.n {
			items = append(items, Item{Task: TaskBBQ, ID: fmt.Sprintf("bbq/%s/%d", c.name, i),
				Meta: map[string]string{"category": c.name}, Choices: []Choice{{Text: " a", Correct: true}, {Text: " b"}}})
		}
	}
	return items
}

func countStrata(items []Item) map[string]int {
	n := map[string]int{}
	for _, it := range items {
		n[it.Stratum()]++
	}
	return n
}

func TestBalancedPrefixesSpreadOverStrata(t *testing.T) {
	items := stratifiedItems()
	b := Balanced(items, 3)
	if len(b) != len(items) {
		t.Fatalf("%d items, want %d", len(b), len(items))
	}
	if got := countStrata(b); !reflect.DeepEqual(got, map[string]int{"A": 60, "B": 30, "C": 10}) {
		t.Fatalf("strata %v", got)
	}
	// Every prefix holds each stratum's share: no stratum is more than one
	// item ahead of another that still has items left.
	for n := 1; n <= len(b); n++ {
		c := countStrata(b[:n])
		for s, k := range c {
			for s2, k2 := range c {
				left := map[string]int{"A": 60, "B": 30, "C": 10}[s2] - k2
				if k > k2+1 && left > 0 {
					t.Fatalf("prefix %d: %s has %d items, %s only %d with %d left", n, s, k, s2, k2, left)
				}
			}
		}
	}
	// The first 30 items: 10 of each category (file order would give 30 A).
	if c := countStrata(b[:30]); c["A"] != 10 || c["B"] != 10 || c["C"] != 10 {
		t.Errorf("first 30 items: %v, want 10 per category", c)
	}
	// Within a category the order is not the file order.
	var a []string
	for _, it := range b {
		if it.Stratum() == "A" {
			a = append(a, it.ID)
		}
	}
	if slices.IsSortedFunc(a, func(x, y string) int { return idNum(x) - idNum(y) }) {
		t.Error("category A's items are in file order")
	}
	if fileA := ids(items[:10]); reflect.DeepEqual(a[:10], fileA) {
		t.Error("category A's first 10 items are the file's")
	}
}

func idNum(id string) int {
	var c string
	var n int
	fmt.Sscanf(id, "bbq/%1s/%d", &c, &n)
	return n
}

func TestBalancedDeterministic(t *testing.T) {
	items := stratifiedItems()
	b := ids(Balanced(items, 3))
	shuffled := slices.Clone(items)
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if got := ids(Balanced(shuffled, 3)); !reflect.DeepEqual(got, b) {
		t.Error("the order depends on the input order")
	}
	if got := ids(Balanced(items, 4)); reflect.DeepEqual(got, b) {
		t.Error("seeds 3 and 4 give the same order")
	}
	if ids(items)[0] != "bbq/A/0" || items[0].ID != "bbq/A/0" {
		t.Error("Balanced modified its input")
	}
	if got := Balanced(nil, 1); len(got) != 0 {
		t.Errorf("Balanced(nil) = %v", got)
	}
}

// TestSplitPartsBalanced: every part of Split is balanced, so --limit N of
// extract and eval takes every category, not the file's first.
func TestSplitPartsBalanced(t *testing.T) {
	items := stratifiedItems()
	tr, dv, te := Split(items, 0.4, 0.1, 0.5, 0)
	for p, part := range [][]Item{tr, dv, te} {
		if !reflect.DeepEqual(ids(part), ids(Balanced(part, 0))) {
			t.Errorf("part %d not in balanced order", p)
		}
		if c := countStrata(part[:3]); c["A"] != 1 || c["B"] != 1 || c["C"] != 1 {
			t.Errorf("part %d: first 3 items %v, want one per category", p, c)
		}
	}
	// Training examples (extract --split train --limit) follow the items.
	ex := Examples(tr, "")
	if c := countStrata(tr[:6]); c["A"] != 2 || c["B"] != 2 || c["C"] != 2 {
		t.Errorf("train: first 6 items %v", c)
	}
	if ex[0].ItemID != tr[0].ID || ex[2].ItemID != tr[1].ID {
		t.Errorf("examples not in item order: %s, %s", ex[0].ItemID, ex[2].ItemID)
	}
}

func TestStratum(t *testing.T) {
	for _, c := range []struct {
		it   Item
		want string
	}{
		{Item{Task: TaskBBQ, Meta: map[string]string{"category": "Age"}}, "Age"},
		{Item{Task: TaskToxiGen, Meta: map[string]string{"group": "women", "category": "x"}}, "women"},
		{Item{Task: TaskPairs, Meta: map[string]string{"attribute": "formality"}}, "formality"},
		{Item{Task: TaskTruthfulQA, Meta: map[string]string{"category": "Misconceptions"}}, "Misconceptions"},
		{Item{Task: TaskTruthfulQA}, ""},
	} {
		if got := c.it.Stratum(); got != c.want {
			t.Errorf("%s stratum %q, want %q", c.it.Task, got, c.want)
		}
	}
}
