"""Data parallelism on 4 fake CPU devices: the check runs in a fresh interpreter, since XLA_FLAGS
only takes effect before jax initializes its backend, which this test process has already done."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FOUR_DEVICES = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import pytest

    from scaling.trainer.batches import sequence_length, token_arrays
    from scaling.trainer.config import ModelConfig
    from scaling.trainer.model import init_model
    from scaling.trainer.parallel import _sharded_step, data_mesh, data_parallel_train_step, replicate, shard_batch
    from scaling.tasks import tokenizer
    from scaling.tasks.mixture import training_pool
    from scaling.trainer.train import batch_indices, build_optimizer, train_step

    assert jax.device_count() == 4, jax.devices()
    cfg = ModelConfig(vocab_size=tokenizer.VOCAB_SIZE, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=32, max_len=48)
    pool = training_pool(("add",), 1, 64, seed=0)
    data = token_arrays(pool, sequence_length(pool))
    optimizer = build_optimizer(0.1, 1.0)
    graphdef, params = init_model(cfg, seed=0)
    alone = (params, optimizer.init(params))
    split = replicate(jax.tree.map(jnp.copy, alone))
    for step in range(5):
        batch = data.take(batch_indices(len(data), 8, step, seed=0))
        alone, expected = train_step(alone, batch, graphdef=graphdef, optimizer=optimizer, lr=3e-3)
        sharded = shard_batch(batch)
        assert sharded["inputs"].sharding.spec == jax.sharding.PartitionSpec("data")
        assert len(sharded["inputs"].addressable_shards) == 4
        split, metrics = data_parallel_train_step(split, sharded, graphdef, optimizer, 3e-3)
        np.testing.assert_allclose(float(metrics["loss"]), float(expected["loss"]), rtol=0, atol=1e-5)
    for got, want in zip(jax.tree.leaves(split), jax.tree.leaves(alone), strict=True):
        assert got.sharding.is_fully_replicated
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)

    # Each device attends over its own rows only: nothing of the batch is gathered (the attention kernel is a
    # custom call, which a partitioner would have replicated).
    program = _sharded_step(data_mesh(), graphdef, optimizer).lower(split, sharded, 3e-3).compile().as_text()
    assert "all-gather" not in program and "scaling_attention_forward" in program

    odd = data.take(np.arange(6))
    with pytest.raises(ValueError, match="batch size 6 is not divisible by the 4 devices"):
        shard_batch(odd)
    with pytest.raises(ValueError, match="batch size 6 is not divisible by the 4 devices"):
        data_parallel_train_step(split, odd, graphdef, optimizer, 3e-3)
    print("four devices ok")
    """
)


@pytest.mark.slow  # a fresh interpreter imports jax and compiles both steps
def test_four_devices_match_one_and_reject_uneven_batches():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "four devices ok" in result.stdout

