package intervene

import (
	"fmt"

	"github.com/matsteer/matsteer/hooks"
)

// Router is the intervention at one hook point of a context whose batches
// mix sequences that are steered differently: it applies each sequence's
// own Intervention to that sequence's rows and leaves the rows of every
// other sequence untouched (bit for bit). A context gets one Router per
// point in use; set and remove sequences only between decodes.
type Router struct {
	point hooks.Point
	bySeq map[int]*Intervention
}

// NewRouter makes an empty router for point p.
func NewRouter(p hooks.Point) *Router {
	return &Router{point: p, bySeq: map[int]*Intervention{}}
}

// Point is the hook point the router serves.
func (r *Router) Point() hooks.Point { return r.point }

// Set steers sequence seq with iv (nil removes it). iv must steer the
// router's point.
func (r *Router) Set(seq int, iv *Intervention) error {
	if iv == nil {
		delete(r.bySeq, seq)
		return nil
	}
	if iv.point != r.point {
		return fmt.Errorf("steering router for %s: intervention steers %s", r.point, iv.point)
	}
	r.bySeq[seq] = iv
	return nil
}

// Len is the number of steered sequences.
func (r *Router) Len() int { return len(r.bySeq) }

// Intervene implements hooks.Intervention: consecutive rows of one sequence
// are steered together by that sequence's intervention.
func (r *Router) Intervene(rows *hooks.Rows) error {
	start, seq := 0, -1
	for i := 0; i <= rows.N; i++ {
		next := -1 // past the last row: end the final run
		if i < rows.N {
			next = rows.Seq(i)
		}
		if i > 0 && next == seq {
			continue
		}
		if iv := r.bySeq[seq]; iv != nil && i > start {
			sub := rows.Slice(start, i)
			if err := iv.Intervene(&sub); err != nil {
				return err
			}
		}
		start, seq = i, next
	}
	return nil
}

// Needed reports whether iv has to be installed at all: an intervention
// with every strength zero and no audit leaves the rows as they are.
func (iv *Intervention) Needed() bool { return iv.active || iv.audit != nil }
