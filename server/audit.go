package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"

	"github.com/matsteer/matsteer/intervene"
	"github.com/matsteer/matsteer/llama"
)

// auditLog is the shared JSONL audit sink. Each request's lines are
// collected privately and written in one piece when it ends, so lines of
// concurrent requests never interleave.
type auditLog struct {
	mu     sync.Mutex
	w      io.Writer
	log    *slog.Logger
	failed bool
}

func (a *auditLog) commit(b []byte) {
	if len(b) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.w.Write(b); err != nil && !a.failed {
		a.failed = true
		a.log.Error("writing the audit log failed; later failures are not reported", "err", err)
	}
}

// auditRecorder collects the audit lines of one request. It runs on the
// request's decode goroutine only.
type auditRecorder struct {
	model     *llama.Model
	prefix    []byte // `{"request_id":"...","file":"...",`
	names     [][]byte
	promptLen int
	buf       bytes.Buffer
}

func newAuditRecorder(m *llama.Model, id, file string, attrs []string, promptLen int) *auditRecorder {
	r := &auditRecorder{model: m, promptLen: promptLen}
	idj, _ := json.Marshal(id)
	fj, _ := json.Marshal(file)
	r.prefix = append(append(append(append([]byte(`{"request_id":`), idj...), `,"file":`...), fj...), ',')
	for _, a := range attrs {
		b, _ := json.Marshal(a)
		r.names = append(r.names, b)
	}
	return r
}

// row appends one line:
//
//	{"request_id":"chatcmpl-…","file":"safety","pos":7,"token":1234,"text":" hello","generated":false,"gates":{"toxicity":0.93,"truthfulness":0.02},"delta":0.41}
//
// A row steering leaves alone (a control token or a chat-template role
// header, see intervene.SpecialTokens) has gates 0, delta 0 and
// "skipped":true.
func (r *auditRecorder) row(a intervene.RowAudit) {
	b := r.buf.AvailableBuffer()
	b = append(b, r.prefix...)
	b = append(b, `"pos":`...)
	b = strconv.AppendInt(b, int64(a.Pos), 10)
	b = append(b, `,"token":`...)
	b = strconv.AppendInt(b, int64(a.Token), 10)
	text, _ := marshal(r.model.TokenPiece(a.Token))
	b = append(b, `,"text":`...)
	b = append(b, text...)
	b = append(b, `,"generated":`...)
	b = strconv.AppendBool(b, a.Pos >= r.promptLen)
	b = append(b, `,"gates":{`...)
	for i, g := range a.Gates {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.names[i]...)
		b = append(b, ':')
		b = appendNum(b, g)
	}
	b = append(b, `},"delta":`...)
	b = appendNum(b, a.Delta)
	if a.Skipped {
		// A control token or chat-template role header: left unsteered.
		b = append(b, `,"skipped":true`...)
	}
	b = append(b, "}\n"...)
	r.buf.Write(b)
}

// appendNum appends v as a JSON number (null when it is not finite).
func appendNum(b []byte, v float32) []byte {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, float64(v), 'g', 6, 32)
}
