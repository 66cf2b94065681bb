// Package progress draws a single-line progress bar with rate and ETA for
// long-running work (extraction, training, evaluation).
//
// On a terminal the line is redrawn in place at most ten times a second; when
// the writer is not a terminal (a log file, CI) a plain line is written every
// few seconds instead, so logs stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar reports progress of a job with a known total. It is safe for
// concurrent use. A nil *Bar ignores every call, so callers may pass nil to
// switch progress reporting off.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	unit     string
	total    int64
	done     int64
	status   string
	start    time.Time
	last     time.Time
	interval time.Duration
	tty      bool
	finished bool
}

// New starts a bar writing to w. total is the amount of work in unit (for
// example "tok" or "step"); total <= 0 means unknown.
func New(w io.Writer, total int64, label, unit string) *Bar {
	tty := isTerminal(w)
	interval := 100 * time.Millisecond
	if !tty {
		interval = 5 * time.Second
	}
	now := time.Now()
	return &Bar{w: w, label: label, unit: unit, total: total, start: now, last: now.Add(-interval), interval: interval, tty: tty}
}

// Add records n more units of finished work.
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	b.maybeDraw(false)
}

// SetStatus sets a short free-form text shown after the counters (for
// example the current loss terms).
func (b *Bar) SetStatus(s string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status = s
	b.maybeDraw(false)
}

// SetTotal changes the total once it becomes known.
func (b *Bar) SetTotal(total int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.total = total
	b.mu.Unlock()
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.maybeDraw(true)
	b.finished = true
	if b.tty {
		fmt.Fprintln(b.w)
	}
}

func (b *Bar) maybeDraw(force bool) {
	if b.finished {
		return
	}
	now := time.Now()
	if !force && now.Sub(b.last) < b.interval {
		return
	}
	b.last = now
	line := b.render(now)
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
}

func (b *Bar) render(now time.Time) string {
	elapsed := now.Sub(b.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(b.done) / elapsed
	}
	var sb strings.Builder
	sb.WriteString(b.label)
	if b.total > 0 {
		frac := float64(b.done) / float64(b.total)
		if frac > 1 {
			frac = 1
		}
		const width = 24
		filled := int(frac * width)
		fmt.Fprintf(&sb, " [%s%s] %3.0f%% %d/%d %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*frac, b.done, b.total, b.unit)
	} else {
		fmt.Fprintf(&sb, " %d %s", b.done, b.unit)
	}
	fmt.Fprintf(&sb, " %s/s", formatRate(rate))
	if b.total > 0 && rate > 0 && b.done < b.total {
		eta := time.Duration(float64(b.total-b.done) / rate * float64(time.Second))
		fmt.Fprintf(&sb, " ETA %s", eta.Round(time.Second))
	} else {
		fmt.Fprintf(&sb, " %s", time.Duration(elapsed*float64(time.Second)).Round(100*time.Millisecond))
	}
	if b.status != "" {
		sb.WriteString("  ")
		sb.WriteString(b.status)
	}
	return sb.String()
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.2f", r)
	}
}

func isTerminal(w io.Writer) bool {
	if os.Getenv("CI") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0
}
