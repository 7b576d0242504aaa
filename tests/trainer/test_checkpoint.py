"""Checkpoints: exact round trips, and runs killed at any point resume to the same bits.

Run as a script, this file is the training run the kill tests start in a subprocess.
"""

import dataclasses
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.checkpoint import latest_checkpoint, restore_checkpoint, save_checkpoint
from scaling.trainer.config import ModelConfig
from scaling.errors import UserError
from scaling.trainer.model import init_model
from scaling.tasks.mixture import training_pool
from scaling.trainer.train import batch_indices, build_optimizer, train_step

BATCH_SIZE, SEED = 8, 0
OPTIMIZER_ARGS = dict(weight_decay=0.1, grad_clip=1.0)
LR = 1e-2
TOTAL_STEPS, EVERY = 30, 5  # the subprocess runs


def pool_arrays():
    pool = training_pool(("add",), 1, 64, seed=0)
    return token_arrays(pool, sequence_length(pool))


@pytest.fixture(scope="module")
def data():
    return pool_arrays()


def fresh_state(model_cfg):
    graphdef, params = init_model(model_cfg, SEED)
    optimizer = build_optimizer(**OPTIMIZER_ARGS)
    return graphdef, optimizer, (params, optimizer.init(params))


def run(model_cfg, data, directory, total_steps, every, pause=0.0):
    """Train to total_steps from the latest checkpoint in directory (or from scratch), saving every `every` steps."""
    graphdef, optimizer, state = fresh_state(model_cfg)
    done, losses = 0, []
    latest = latest_checkpoint(directory)
    if latest is not None:
        state, extra = restore_checkpoint(directory, latest, like_state=state)
        done, losses = extra["step"], extra["losses"]
    for step in range(done + 1, total_steps + 1):
        batch = data.take(batch_indices(len(data), BATCH_SIZE, step - 1, SEED))
        state, metrics = train_step(state, batch, graphdef=graphdef, optimizer=optimizer, lr=LR)
        losses.append(float(metrics["loss"]))
        if step % every == 0:
            save_checkpoint(directory, step, state, {"step": step, "losses": losses})
        time.sleep(pause)  # widens the window a killing test aims at; changes no number
    return state, losses


def assert_bitwise_equal(tree, other):
    assert jax.tree.structure(tree) == jax.tree.structure(other)
    for leaf, other_leaf in zip(jax.tree.leaves(tree), jax.tree.leaves(other), strict=True):
        leaf, other_leaf = np.asarray(leaf), np.asarray(other_leaf)
        assert leaf.dtype == other_leaf.dtype and leaf.shape == other_leaf.shape
        assert np.array_equal(leaf, other_leaf) and leaf.tobytes() == other_leaf.tobytes()


def copy_to_host(tree):
    """A host copy: train_step donates the device buffers of the state it is given."""
    return jax.tree.map(np.array, tree)


def test_round_trip_is_bitwise_exact(tiny_model_cfg, data, tmp_path):
    graphdef, optimizer, state = fresh_state(tiny_model_cfg)
    for step in range(3):  # moments and step counters away from their initial values
        batch = data.take(np.arange(step, step + BATCH_SIZE))
        state, _ = train_step(state, batch, graphdef=graphdef, optimizer=optimizer, lr=LR)
    extra = {"step": 3, "losses": [0.1, 1 / 3, 2.5e-7], "budgets_done": [], "data_position": 24}
    save_checkpoint(tmp_path, 3, state, extra)
    trained = copy_to_host(state)

    concrete, restored_extra = restore_checkpoint(tmp_path, 3, like_state=fresh_state(tiny_model_cfg)[2])
    abstract, _ = restore_checkpoint(tmp_path, 3, like_state=jax.eval_shape(lambda: state))
    assert_bitwise_equal(concrete, trained)
    assert_bitwise_equal(abstract, trained)
    assert restored_extra == extra
    leaves = jax.tree_util.tree_leaves_with_path(concrete)
    counts = [leaf for path, leaf in leaves if "count" in jax.tree_util.keystr(path)]
    assert counts and all(int(count) == 3 for count in counts)


def test_resumed_run_ends_bitwise_equal_to_an_uninterrupted_one(tiny_model_cfg, data, tmp_path):
    whole, whole_losses = run(tiny_model_cfg, data, tmp_path / "whole", total_steps=12, every=4)
    # Killed after step 10: steps 9 and 10 are lost and redone from the checkpoint of step 8.
    run(tiny_model_cfg, data, tmp_path / "killed", total_steps=10, every=4)
    assert latest_checkpoint(tmp_path / "killed") == 8
    resumed, resumed_losses = run(tiny_model_cfg, data, tmp_path / "killed", total_steps=12, every=4)
    assert_bitwise_equal(resumed, whole)
    assert resumed_losses == whole_losses


def script(*args) -> list[str]:
    return [sys.executable, __file__, *map(str, args)]


@pytest.mark.slow
def test_run_killed_by_sigkill_resumes_to_the_same_bits(tiny_model_cfg, tmp_path):
    model_json = json.dumps(dataclasses.asdict(tiny_model_cfg))
    # One compilation for the three runs: a cached executable must give the same bits as a fresh one.
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
                        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    subprocess.run(script("train", model_json, tmp_path / "whole", tmp_path / "whole.npz", 0.0), env=env, check=True,
                   timeout=300)
    killed = subprocess.Popen(script("train", model_json, tmp_path / "killed", tmp_path / "killed.npz", 0.1), env=env)
    try:
        deadline = time.monotonic() + 300
        while latest_checkpoint(tmp_path / "killed") is None:
            assert killed.poll() is None and time.monotonic() < deadline, "the run never wrote a checkpoint"
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    assert latest_checkpoint(tmp_path / "killed") < TOTAL_STEPS and not (tmp_path / "killed.npz").exists()

    subprocess.run(script("train", model_json, tmp_path / "killed", tmp_path / "resumed.npz", 0.0), env=env,
                   check=True, timeout=300)
    with np.load(tmp_path / "whole.npz") as expected, np.load(tmp_path / "resumed.npz") as got:
        assert sorted(got.files) == sorted(expected.files) and len(got.files) > 2
        for name in expected.files:
            assert got[name].dtype == expected[name].dtype and got[name].tobytes() == expected[name].tobytes(), name


def test_a_save_killed_before_its_rename_is_never_picked_up(tmp_path):
    died = subprocess.run(script("die-mid-save", tmp_path), timeout=120)
    assert died.returncode == -signal.SIGKILL
    assert glob.glob(str(tmp_path / "2.orbax-checkpoint-tmp*")), "the kill did not land inside the save of step 2"
    assert latest_checkpoint(tmp_path) == 1
    state, extra = restore_checkpoint(tmp_path, 1, like_state={"w": np.zeros(4, np.float32)})
    assert extra == {"step": 1} and np.array_equal(state["w"], np.arange(4, dtype=np.float32))
    save_checkpoint(tmp_path, 2, {"w": np.ones(4, np.float32)}, {"step": 2})  # the leftover does not block it
    assert latest_checkpoint(tmp_path) == 2 and not glob.glob(str(tmp_path / "*tmp*"))


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    state = {"w": np.zeros(3, np.float32)}
    for step in range(1, 6):
        save_checkpoint(tmp_path / "two", step, state, {})
        save_checkpoint(tmp_path / "three", step, state, {}, keep=3)
    assert sorted(os.listdir(tmp_path / "two")) == ["4", "5"]
    assert sorted(os.listdir(tmp_path / "three")) == ["3", "4", "5"]
    assert latest_checkpoint(tmp_path / "two") == 5
    with pytest.raises(UserError, match="no complete checkpoint"):
        restore_checkpoint(tmp_path / "two", 3, state)
    with pytest.raises(ValueError, match="not after the latest"):
        save_checkpoint(tmp_path / "two", 5, state, {})


def test_no_checkpoint_is_none(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    assert not (tmp_path / "missing").exists()


def test_an_unwritable_directory_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(UserError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "file", 1, {"w": np.zeros(2, np.float32)}, {})


def _garble(pattern):
    def garble(step_dir: Path):
        for path in glob.glob(str(step_dir / pattern), recursive=True):
            Path(path).write_bytes(b"garbage")
    return garble


# A failed restore can leave orbax's pending reads calling back into its closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "damage",
    [
        _garble("state/**/d/*"),
        _garble("state/**/manifest.ocdbt"),
        _garble("extra/metadata"),
        lambda step_dir: shutil.rmtree(step_dir / "state"),
    ],
    ids=["array data", "array manifest", "extra", "no state"],
)
def test_a_corrupt_checkpoint_is_a_user_error_naming_it(tmp_path, damage):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "count": np.array(4, np.int32)}
    save_checkpoint(tmp_path, 7, state, {"step": 7})
    damage(tmp_path / "7")
    with pytest.raises(UserError) as error:
        restore_checkpoint(tmp_path, 7, state)
    assert str(tmp_path / "7") in str(error.value) and "\n" not in str(error.value)


def test_a_checkpoint_of_another_shape_or_dtype_is_a_user_error(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": np.zeros((2, 3), np.float32)}, {})
    with pytest.raises(UserError, match=r"w is float32\[2, 3\], expected float32\[3, 2\]"):
        restore_checkpoint(tmp_path, 1, {"w": np.zeros((3, 2), np.float32)})
    with pytest.raises(UserError, match="expected bfloat16"):
        restore_checkpoint(tmp_path, 1, {"w": jax.ShapeDtypeStruct((2, 3), jax.numpy.bfloat16)})
    with pytest.raises(UserError, match="v is missing"):
        restore_checkpoint(tmp_path, 1, {"w": np.zeros((2, 3), np.float32), "v": np.zeros(1, np.float32)})


def _train_script(model_json, directory, out, pause):
    state, losses = run(ModelConfig(**json.loads(model_json)), pool_arrays(), Path(directory), TOTAL_STEPS, EVERY,
                        float(pause))
    leaves = {f"leaf{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    np.savez(out, losses=np.asarray(losses), **leaves)


def _die_mid_save_script(directory):
    """Save step 1, then die by SIGKILL inside the save of step 2, after its files and before its rename."""
    import orbax.checkpoint as ocp

    save_checkpoint(directory, 1, {"w": np.arange(4, dtype=np.float32)}, {"step": 1})
    finalize = ocp.path.atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize_or_die(self):
        if str(self.get_final()) == str(Path(directory).absolute() / "2"):
            os.kill(os.getpid(), signal.SIGKILL)
        await finalize(self)

    ocp.path.atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die
    save_checkpoint(directory, 2, {"w": np.ones(4, np.float32)}, {"step": 2})


if __name__ == "__main__":
    {"train": _train_script, "die-mid-save": _die_mid_save_script}[sys.argv[1]](*sys.argv[2:])
