"""Shared tiny settings: every test runs in seconds on CPU."""

import gc
import os
import sys
import tempfile

# A persistent compilation cache shared by this process and every process the tests start (runners,
# worker processes, Ray workers, SLURM jobs): each would otherwise compile the same steps again.
# Set before jax is imported; entries are keyed by the program and the jax version, so reuse is exact.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"scaling-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

from scaling.trainer.config import ModelConfig  # noqa: E402
from scaling.tasks import tokenizer  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    """Drop every compiled program a test module leaves in JAX's in-memory caches when the module ends.

    Each program held on the CPU keeps a few memory mappings of its code, and the suite's one process
    compiles thousands of distinct programs (every model shape of every test). Kept all run long, they
    reached Linux's limit on mappings per process (vm.max_map_count, 65,530) at about 94% of the suite,
    and XLA segfaulted on the next one (in CI, twice). Later modules get their programs back from the
    persistent cache above.
    """
    yield
    jax.clear_caches()
    for module in [m for name, m in sys.modules.items() if name.split(".")[0] == "scaling"]:
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):  # functools caches, some of compiled programs
                value.cache_clear()
    gc.collect()


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    return ModelConfig(vocab_size=tokenizer.VOCAB_SIZE, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=32, max_len=48)
