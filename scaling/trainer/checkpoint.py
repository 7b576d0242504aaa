"""Orbax checkpoints of a train state, so that a killed run resumes and ends bitwise identical.

A checkpoint is the step directory `<directory>/<step>`: the state's arrays under `state/` and a
small JSON dict under `extra/`. Orbax writes it as `<step>.orbax-checkpoint-tmp-*` and renames it to
`<step>` only once every file is written; step listing skips temporary names, so a save killed
partway is never found, and the next save removes its leftovers. A save that fails (a full disk above
all) removes its own temporary at once, so the space it took is free again for the rerun. Saves are
synchronous: when `save_checkpoint` returns, the checkpoint is complete.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from scaling.errors import UserError, reported_if_full

KEEP = 2  # checkpoints kept by default: the newest, and one more in case the newest is damaged later


def save_checkpoint(directory, step: int, state: Any, extra: dict, keep: int = KEEP) -> None:
    """Write `state` (any pytree of arrays) and the JSON-able `extra` as checkpoint `step`; keep the newest `keep`."""
    assert keep >= 1, f"keep={keep} would delete the checkpoint just written"
    json.dumps(extra)  # fail before writing anything if extra is not JSON-able
    target = Path(directory) / str(step)
    try:
        with reported_if_full(f"checkpoint {target}", lambda: latest_checkpoint(directory) is not None,
                              "the earlier checkpoints are unchanged"):
            try:
                with _manager(directory, keep=keep) as manager:
                    latest = manager.latest_step()
                    if latest is not None and step <= latest:
                        raise ValueError(f"checkpoint step {step} is not after the latest one ({latest}) in {directory}")
                    arrays = ocp.args.StandardSave(_as_nested_dict(state))
                    saved = manager.save(step, args=ocp.args.Composite(state=arrays, extra=ocp.args.JsonSave(extra)))
            except BaseException:
                for partial in Path(directory).glob(f"{step}.orbax-checkpoint-tmp*"):
                    shutil.rmtree(partial, ignore_errors=True)
                raise
    except OSError as error:  # a directory that is a file, or unwritable
        raise UserError(f"cannot write checkpoint {target} ({type(error).__name__})") from None
    assert saved, f"orbax declined to save step {step} in {directory}"


def latest_checkpoint(directory) -> int | None:
    """The newest complete checkpoint's step in `directory`, None if there is none (or no directory)."""
    if not Path(directory).is_dir():
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def restore_checkpoint(directory, step: int, like_state: Any) -> tuple[Any, dict]:
    """Checkpoint `step` as (state, extra), the state shaped like `like_state` (arrays or ShapeDtypeStructs).

    Every leaf must match the template's shape and dtype exactly, so nothing is silently cast.
    A missing, corrupt or mismatched checkpoint is a UserError naming the directory.
    """
    where = Path(directory) / str(step)
    paths_and_likes, treedef = jax.tree_util.tree_flatten_with_path(like_state)
    paths = [key_names(path) for path, _ in paths_and_likes]
    abstract = _as_nested_dict(like_state, leaf=_abstract)
    try:
        with _manager(directory) as manager:
            if step not in manager.all_steps():
                raise UserError(f"no complete checkpoint at {where}")
            stored = manager.item_metadata(step)["state"]
            if stored is None:
                raise UserError(f"checkpoint {where} is unreadable or corrupt (no state metadata)")
            mismatch = _mismatch(stored.tree, abstract)
            if mismatch:
                raise UserError(f"checkpoint {where} does not fit this train state: {mismatch}")
            restored = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore())
            )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"checkpoint {where} is unreadable or corrupt ({type(error).__name__})") from None
    if restored["extra"] is None:
        raise UserError(f"checkpoint {where} is unreadable or corrupt (no extra)")
    leaves = [_lookup(restored["state"], names) for names in paths]
    return jax.tree_util.tree_unflatten(treedef, leaves), restored["extra"]


def _manager(directory, keep: int | None = None) -> ocp.CheckpointManager:
    """A synchronous manager for writing (keep given) or a read-only one (keep None)."""
    read_only = keep is None
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=False,
        read_only=read_only,
        create=not read_only,
        save_interval_steps=0 if read_only else 1,
        cleanup_tmp_directories=not read_only,  # leftovers of a save that was killed
        preservation_policy=None if read_only else ocp.checkpoint_managers.LatestN(n=keep),
    )
    handlers = {"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()}
    absl = logging.getLogger("absl")
    level = absl.level
    if read_only:  # orbax warns "Given directory is read only" whenever it is asked to read: a user needn't see it
        absl.setLevel(logging.ERROR)
    try:
        return ocp.CheckpointManager(Path(directory).absolute(), item_handlers=handlers, options=options)
    finally:
        absl.setLevel(level)


def key_names(path) -> tuple[str, ...]:
    """A leaf's pytree path as plain names: nnx.State dict keys, list indices, namedtuple fields."""
    names = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            names.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            names.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            names.append(key.name)
        else:
            assert isinstance(key, jax.tree_util.FlattenedIndexKey), f"unexpected pytree key {key!r}"
            names.append(str(key.key))
    # Orbax joins names with "." into one array name, so a dot would let two leaves collide.
    assert names and not any("." in name for name in names), f"leaf path {names} cannot name an array"
    return tuple(names)


def _as_nested_dict(tree: Any, leaf=lambda x: x) -> dict:
    """The leaves of `tree` in nested dicts keyed by their path names: what Orbax stores plainly.

    nnx.State and optax's namedtuple states become dicts, so restoring depends on no custom pytree
    node; the template's own structure is put back on restore.
    """
    nested: dict = {}
    for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
        *parents, last = key_names(path)
        node = nested
        for name in parents:
            node = node.setdefault(name, {})
        assert last not in node, f"two leaves at {parents + [last]}"
        node[last] = leaf(value)
    return nested


def _abstract(like) -> jax.ShapeDtypeStruct:
    sharding = getattr(like, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(np.shape(like), like.dtype, sharding=sharding)


def _lookup(nested: dict, names: tuple[str, ...]):
    for name in names:
        nested = nested[name]
    return nested


def _mismatch(stored, abstract) -> str | None:
    """The first difference between stored array metadata and the template, None if they agree."""
    stored_leaves = {key_names(p): m for p, m in jax.tree_util.tree_flatten_with_path(stored)[0]}
    wanted_leaves = {key_names(p): a for p, a in jax.tree_util.tree_flatten_with_path(abstract)[0]}
    for names in sorted(wanted_leaves.keys() | stored_leaves.keys()):
        if names not in stored_leaves:
            return f"{'/'.join(names)} is missing"
        if names not in wanted_leaves:
            return f"{'/'.join(names)} is not in the train state"
        have = f"{np.dtype(stored_leaves[names].dtype)}{list(stored_leaves[names].shape)}"
        want = f"{np.dtype(wanted_leaves[names].dtype)}{list(wanted_leaves[names].shape)}"
        if have != want:
            return f"{'/'.join(names)} is {have}, expected {want}"
    return None
