"""Shared tiny settings: every test runs in seconds on CPU."""

import pytest

from scaling.config import ModelConfig
from scaling.tasks import tokenizer


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    return ModelConfig(vocab_size=tokenizer.VOCAB_SIZE, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=32, max_len=48)
