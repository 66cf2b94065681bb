package llama

/*
#include <stdlib.h>
#include "randmodel.h"
#include "rpc.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/matsteer/matsteer/gguf"
)

// RandomModelConfig describes a tiny llama-architecture model with random
// weights, built in memory for tests (no download needed).
type RandomModelConfig struct {
	NLayer, NEmbd, NHead, NHeadKV, NFF, NCtx int
	Seed                                     uint64
	// WeightScale is the standard deviation of matrix weights (0: 1/sqrt(NEmbd)).
	WeightScale float64
	// ChatTemplate is stored as tokenizer.chat_template when non-empty.
	ChatTemplate string
}

// DefaultRandomModelConfig is a 4-layer, 64-wide model with a 268-token
// byte-level vocabulary and a chatml template.
func DefaultRandomModelConfig() RandomModelConfig {
	return RandomModelConfig{NLayer: 4, NEmbd: 64, NHead: 4, NHeadKV: 2, NFF: 128, NCtx: 512, Seed: 1, ChatTemplate: "chatml"}
}

// NewRandomModel builds a model with random weights from cfg.
func NewRandomModel(cfg RandomModelConfig, p ModelParams) (*Model, error) {
	if cfg.NLayer <= 0 || cfg.NEmbd <= 0 || cfg.NHead <= 0 || cfg.NFF <= 0 || cfg.NCtx <= 0 || cfg.NEmbd%cfg.NHead != 0 {
		return nil, fmt.Errorf("random model: invalid shape %+v", cfg)
	}
	if cfg.NHeadKV <= 0 {
		cfg.NHeadKV = cfg.NHead
	}
	if cfg.WeightScale <= 0 {
		cfg.WeightScale = 1 / math.Sqrt(float64(cfg.NEmbd))
	}
	initBackend()
	c := C.struct_matsteer_rand_cfg{
		n_layer: C.uint32_t(cfg.NLayer), n_embd: C.uint32_t(cfg.NEmbd), n_head: C.uint32_t(cfg.NHead),
		n_head_kv: C.uint32_t(cfg.NHeadKV), n_ff: C.uint32_t(cfg.NFF), n_ctx: C.uint32_t(cfg.NCtx),
		seed: C.uint64_t(cfg.Seed), weight_scale: C.float(cfg.WeightScale),
	}
	if cfg.ChatTemplate != "" {
		c.chat_template = C.CString(cfg.ChatTemplate)
		defer C.free(unsafe.Pointer(c.chat_template))
	}
	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(p.GPULayers)
	var m *C.struct_llama_model
	rpc, place, err := withDevices(p, &mp, func() error {
		m = C.matsteer_rand_model_load(&c, mp)
		if m == nil {
			return errors.New("llama.cpp could not build it")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("random model: %w", err)
	}
	model := newModel(m, "")
	model.rpc, model.placement = rpc, place(model.NLayer())
	return model, nil
}

// SaveToFile writes the model as a GGUF file (atomically: a temporary file
// in the same directory is renamed into place).
func (m *Model) SaveToFile(path string) error {
	if m == nil || m.c == nil {
		return errors.New("save model: model is closed")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".model-*.gguf")
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	tmp.Close()
	cpath := C.CString(tmp.Name())
	defer C.free(unsafe.Pointer(cpath))
	C.llama_model_save_to_file(m.c, cpath)
	// llama.cpp's saver leaves out the chat template; keep it, so a saved
	// model formats chats as the one in memory does.
	if tmpl := m.ChatTemplate(); tmpl != "" {
		if err := addChatTemplate(tmp.Name(), tmpl); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("save model: %w", err)
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// addChatTemplate stores tmpl as tokenizer.chat_template in the GGUF file
// at path.
func addChatTemplate(path, tmpl string) error {
	f, err := gguf.ReadFile(path)
	if err != nil {
		return err
	}
	if _, ok := f.Get("tokenizer.chat_template"); ok {
		return nil
	}
	f.Set("tokenizer.chat_template", tmpl)
	return f.WriteFile(path)
}
