// Package acts reads and writes activation files: the per-token activation
// rows captured from a model at one site and layer, together with the
// attribute, label, sample id and token position of every row.
//
// Package extract (or the root package's Model.Extract) writes them;
// training reads them (matsteer.TrainActivations, `matsteer train`).
//
// # Format
//
// An activation file is a plain safetensors file
// (https://huggingface.co/docs/safetensors), so numpy and torch users can read
// it with safetensors.numpy.load_file / safetensors.torch.load_file. It holds
// five tensors, all little-endian:
//
//	activations  F32 [N, NEmbd]  one row per captured token, row-major
//	attribute    I32 [N]         index into Meta.Attributes
//	label        I8  [N]         1 = positive (desired), 0 = negative
//	sample_id    I64 [N]         the text (sample) the row came from
//	position     I32 [N]         token position of the row in its sequence
//
// and a "__metadata__" map (string to string) with one key per Meta field:
//
//	matsteer.format_version  "1"
//	matsteer.model_arch      Meta.ModelArch
//	matsteer.model_name      Meta.ModelName
//	matsteer.n_embd          decimal Meta.NEmbd
//	matsteer.layer           decimal Meta.Layer
//	matsteer.site            Meta.Site
//	matsteer.token_mode      Meta.TokenMode
//	matsteer.attributes      JSON array of Meta.Attributes
//	matsteer.source          Meta.Source
//	matsteer.extra.<key>     Meta.Extra[<key>]
//
// The file follows the safetensors specification exactly: an 8-byte
// little-endian header length, a JSON header (padded at the end with spaces),
// then the byte buffer, which the tensors cover contiguously with no gaps;
// data_offsets are relative to the start of the byte buffer. The header is
// padded so that the byte buffer starts at a multiple of 8 bytes and every
// tensor is aligned to its element size.
//
// # Writing
//
// Create returns a Writer that streams activation rows straight into a
// temporary file in the destination directory, keeping only the small
// per-row arrays (17 bytes a row) in memory. Space for the header is reserved
// at the start of the temporary file (its maximum size is known once Meta is
// known), so Close only appends the small tensors, writes the header into the
// reserved space, syncs, and renames the file into place: nothing appears at
// the destination path until Close succeeds, and a failed or aborted writer
// leaves nothing behind.
//
// # Reading
//
// Open validates the whole file (header, dtypes, shapes, offsets, metadata and
// the per-row arrays) and loads the per-row arrays; activation rows are read
// on demand with Vector, VectorsRange or Vectors.
package acts

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/matsteer/matsteer/internal/safefile"
)

// FormatVersion is the value of the matsteer.format_version metadata key
// written by this package; Open rejects any other version.
const FormatVersion = "1"

// Token modes: which token positions of a text were captured.
const (
	TokenAll      = "all"      // every token of prompt and response
	TokenLast     = "last"     // the last token of each text only
	TokenResponse = "response" // the response tokens only
)

// Tensor names inside an activation file.
const (
	TensorActivations = "activations"
	TensorAttribute   = "attribute"
	TensorLabel       = "label"
	TensorSampleID    = "sample_id"
	TensorPosition    = "position"
)

// Metadata keys inside an activation file's __metadata__ map.
const (
	KeyFormatVersion = "matsteer.format_version"
	KeyModelArch     = "matsteer.model_arch"
	KeyModelName     = "matsteer.model_name"
	KeyNEmbd         = "matsteer.n_embd"
	KeyLayer         = "matsteer.layer"
	KeySite          = "matsteer.site"
	KeyTokenMode     = "matsteer.token_mode"
	KeyAttributes    = "matsteer.attributes"
	KeySource        = "matsteer.source"
	KeyExtraPrefix   = "matsteer.extra."
)

// MaxNEmbd bounds the row width accepted by Create and Open.
const MaxNEmbd = 1 << 20

// maxHeaderSize is the largest header the reference safetensors
// implementation accepts.
const maxHeaderSize = 100_000_000

// Meta describes the rows of an activation file.
type Meta struct {
	ModelArch string // model architecture (GGUF general.architecture)
	ModelName string // model name (GGUF general.name); put file hashes etc. in Extra
	NEmbd     int    // row width
	Layer     int    // block index the rows were captured at
	Site      string // capture site, e.g. "l_out"
	TokenMode string // TokenAll, TokenLast, TokenResponse, or "" (unspecified)

	Attributes []string // attribute index -> name
	Source     string   // dataset path(s)

	Extra map[string]string // free-form identity and provenance (e.g. "model_sha256")
}

// Row is the per-row metadata of one activation row.
type Row struct {
	Attribute int32 // index into Meta.Attributes
	Label     int8  // 1 positive, 0 negative
	SampleID  int64 // sample (text) the row came from
	Position  int32 // token position in its sequence
}

// Validate reports whether m can describe an activation file.
func (m Meta) Validate() error {
	if m.NEmbd <= 0 || m.NEmbd > MaxNEmbd {
		return fmt.Errorf("n_embd %d out of range [1, %d]", m.NEmbd, MaxNEmbd)
	}
	if m.Layer < 0 {
		return fmt.Errorf("layer %d is negative", m.Layer)
	}
	switch m.TokenMode {
	case "", TokenAll, TokenLast, TokenResponse:
	default:
		return fmt.Errorf("token mode %s is not one of %q, %q, %q", safefile.Quote(m.TokenMode), TokenAll, TokenLast, TokenResponse)
	}
	if len(m.Attributes) == 0 {
		return fmt.Errorf("no attributes")
	}
	if len(m.Attributes) > 1<<31-1 {
		return fmt.Errorf("too many attributes (%d)", len(m.Attributes))
	}
	seen := make(map[string]bool, len(m.Attributes))
	for i, a := range m.Attributes {
		if strings.TrimSpace(a) == "" {
			return fmt.Errorf("attribute %d has an empty name", i)
		}
		if seen[a] {
			return fmt.Errorf("attribute %s appears twice", safefile.Quote(a))
		}
		seen[a] = true
	}
	for k := range m.Extra {
		if k == "" {
			return fmt.Errorf("extra metadata has an empty key")
		}
	}
	return nil
}

// metadata encodes m as the safetensors __metadata__ map.
func (m Meta) metadata() map[string]string {
	attrs, _ := json.Marshal(m.Attributes) // []string always marshals
	md := map[string]string{
		KeyFormatVersion: FormatVersion,
		KeyModelArch:     m.ModelArch,
		KeyModelName:     m.ModelName,
		KeyNEmbd:         strconv.Itoa(m.NEmbd),
		KeyLayer:         strconv.Itoa(m.Layer),
		KeySite:          m.Site,
		KeyTokenMode:     m.TokenMode,
		KeyAttributes:    string(attrs),
		KeySource:        m.Source,
	}
	for k, v := range m.Extra {
		md[KeyExtraPrefix+k] = v
	}
	return md
}

// metaFromMetadata decodes and validates the __metadata__ map of a file whose
// activations tensor has nEmbd columns.
func metaFromMetadata(md map[string]string, nEmbd int64) (Meta, error) {
	var m Meta
	v, ok := md[KeyFormatVersion]
	if !ok {
		return m, fmt.Errorf("metadata key %s is missing: not a matsteer activation file", KeyFormatVersion)
	}
	if v != FormatVersion {
		if n, err := strconv.Atoi(v); err == nil {
			return m, fmt.Errorf("unsupported format version %d (this build reads %s)", n, FormatVersion)
		}
		return m, fmt.Errorf("format version is not a number (this build reads %s)", FormatVersion)
	}
	intKey := func(key string) (int, error) {
		s, ok := md[key]
		if !ok {
			return 0, fmt.Errorf("metadata key %s is missing", key)
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("metadata key %s is not an integer", key)
		}
		return n, nil
	}
	var err error
	if m.NEmbd, err = intKey(KeyNEmbd); err != nil {
		return m, err
	}
	if int64(m.NEmbd) != nEmbd {
		return m, fmt.Errorf("metadata %s = %d but tensor %s has %d columns", KeyNEmbd, m.NEmbd, TensorActivations, nEmbd)
	}
	if m.Layer, err = intKey(KeyLayer); err != nil {
		return m, err
	}
	s, ok := md[KeyAttributes]
	if !ok {
		return m, fmt.Errorf("metadata key %s is missing", KeyAttributes)
	}
	if err := json.Unmarshal([]byte(s), &m.Attributes); err != nil {
		return m, fmt.Errorf("metadata key %s: not a JSON array of strings", KeyAttributes)
	}
	m.ModelArch = md[KeyModelArch]
	m.ModelName = md[KeyModelName]
	m.Site = md[KeySite]
	m.TokenMode = md[KeyTokenMode]
	m.Source = md[KeySource]
	for k, v := range md {
		if name, ok := strings.CutPrefix(k, KeyExtraPrefix); ok {
			if m.Extra == nil {
				m.Extra = make(map[string]string)
			}
			m.Extra[name] = v
		}
	}
	if err := m.Validate(); err != nil {
		return m, fmt.Errorf("metadata: %w", err)
	}
	return m, nil
}
