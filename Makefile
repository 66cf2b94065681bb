# matsteer: MAT-Steer for llama.cpp models, in Go.
#
#   make run     build, fetch the default model, show a short generation
#   make test    build and run every test (fetches the default model once)
#   make bench   benchmarks (see BENCHMARKS.md)
#   make eval    the study of RESULTS.md
#   make install PREFIX=/usr/local
#                install bin/matsteer, bin/rpc-server, and llama.cpp's
#                static libraries, headers and pkg-config file, for Go
#                programs built outside this repository (README.md)
#
#   make check-cuda
#                compile llama.cpp with CUDA and link bin/matsteer-cuda (no GPU
#                needed; README.md, "Builds")
#
# Variables: CUDA=1 or VULKAN=1 (GPU builds), CUDA_ARCHS="80;86;89;90" (the GPU
# architectures a CUDA build compiles for), LLAMA_CPP_DIR=/path (your own llama.cpp
# checkout), AMX=1 (keep ggml's AMX kernels: README.md, "Builds"),
# MATSTEER_CACHE=dir (default ~/.cache/matsteer), JOBS=n.

SHELL := /bin/bash
GO ?= go
CUDA ?= 0
VULKAN ?= 0
AMX ?= 0
CUDA_ARCHS ?= 80;86;89;90
PREFIX ?= /usr/local
export CUDA VULKAN AMX CUDA_ARCHS
export MATSTEER_CACHE ?= $(HOME)/.cache/matsteer
# Link flags come from the llama.cpp build (llama/link_build.go, written by
# scripts/llama-cpp.sh setup); no build tags select them.
GOTAGS :=
BIN := bin/matsteer
GOFILES := $(shell find . -name '*.go' -not -path './third_party/*' 2>/dev/null) $(wildcard llama/*.c llama/*.h hooks/*.c hooks/*.h)

.PHONY: all llama build model run test test-short test-outside test-vulkan check-cuda bench eval fuzz vet lint install clean

all: build

# llama.cpp: fetched and built into the cache, linked into third_party/,
# its link flags written to llama/link_build.go, its rpc-server copied to
# bin/rpc-server.
llama:
	@scripts/llama-cpp.sh setup

build: llama
	$(GO) build $(GOTAGS) -o $(BIN) ./cmd/matsteer

model: build
	@$(BIN) model pull

run: build model
	@scripts/demo.sh

test: build model
	$(GO) vet $(GOTAGS) ./...
	$(GO) test $(GOTAGS) -count=1 -timeout 60m ./...
	scripts/test-outside.sh

# The hook and steering tests with every layer on a Vulkan device (Mesa's
# software device where there is no GPU: GGML_VK_VISIBLE_DEVICES=0 lets
# ggml use it). Leaves this checkout on the Vulkan build; `make` goes back.
test-vulkan:
	$(MAKE) VULKAN=1 build model
	GGML_VK_VISIBLE_DEVICES=$${GGML_VK_VISIBLE_DEVICES:-0} $(GO) test -count=1 -timeout 60m -run 'GPU|TestRealModels' ./hooks/ ./cmd/matsteer/

# CUDA compiles and links without a GPU: llama.cpp built with CUDA for
# CUDA_ARCHS (a system CUDA, else CUDA 13.0 from PyPI wheels:
# scripts/cuda-toolkit.sh), bin/matsteer-cuda linked against it through its
# pkg-config file (this checkout's own build is left as it is), and run:
# --help, and a model load with every layer offloaded, which names the GPU, or
# fails with a clear "no GPU" error where there is none.
check-cuda: model
	scripts/check-cuda.sh

# A program in a module of its own, built against `make install`'s output.
test-outside: build model
	scripts/test-outside.sh

test-short: llama
	$(GO) test $(GOTAGS) -short ./...

bench: build model
	@scripts/bench.sh

# The reproducible study of RESULTS.md: one split seed, full test sets. Measured on this project's
# quiet 2-core machine, nothing cached: 2 h to 2 h 25 min per split seed with the default
# ablations, about 1.5-1.8 h without them (STUDY_FLAGS="-chat-neutral '' -gate-shift 0"; the
# other stages' sum); RESULTS.md has the stage times. Finished steps are cached, so an
# interrupted run resumes. STUDY_FLAGS adds flags: STUDY_FLAGS="-seeds 0,1,2" or
# STUDY_FLAGS="-fractions 0.1,0.25,0.5".
STUDY_FLAGS ?=
# Data: $MATSTEER_DATA, else ../shared/data when present, else `matsteer data pull` fetches it.
eval: build model
	@export MATSTEER_DATA="$${MATSTEER_DATA:-$$(cd ../shared/data 2>/dev/null && pwd)}" && $(BIN) data pull >/dev/null && \
	  $(GO) run $(GOTAGS) ./cmd/matsteer-study -data "$$($(BIN) data path)" $(STUDY_FLAGS)

# Every fuzz target, FUZZTIME each (scripts/fuzz.sh SECONDS is the bounded CI
# run; it fails when a target is missing here).
FUZZTIME ?= 30s
fuzz: llama
	$(GO) test -run '^$$' -fuzz='^FuzzRead$$' -fuzztime=$(FUZZTIME) ./gguf/
	$(GO) test -run '^$$' -fuzz='^FuzzOpen$$' -fuzztime=$(FUZZTIME) ./acts/
	$(GO) test -run '^$$' -fuzz='^FuzzReadSteering$$' -fuzztime=$(FUZZTIME) ./steer/
	$(GO) test -run '^$$' -fuzz='^FuzzImportControlVector$$' -fuzztime=$(FUZZTIME) ./steer/
	$(GO) test -run '^$$' -fuzz='^FuzzParseJSONL$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzParseBBQ$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzParseTruthfulQAJSON$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzParseTruthfulQACSV$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzParseToxiGenAnnotated$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzParseToxiGenPrompts$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzPairItems$$' -fuzztime=$(FUZZTIME) ./datasets/
	$(GO) test -run '^$$' -fuzz='^FuzzStream$$' -fuzztime=$(FUZZTIME) ./internal/textstream/
	$(GO) test -run '^$$' -fuzz='^FuzzRequestParsing$$' -fuzztime=$(FUZZTIME) ./server/

vet: llama
	$(GO) vet $(GOTAGS) ./...

# gofmt, go vet and staticcheck (a pinned version, installed once into the
# cache from the Go module proxy).
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(MATSTEER_CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	@[ -x $(STATICCHECK) ] || GOBIN=$(dir $(STATICCHECK)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) $(GOTAGS) ./...

install: build
	scripts/llama-cpp.sh install "$(PREFIX)"
	install -D -m 755 $(BIN) "$(PREFIX)/bin/matsteer"

clean:
	rm -rf bin third_party/llama.cpp third_party/build llama/link_build.go
