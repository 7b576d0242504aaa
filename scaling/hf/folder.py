"""The model folder: a base model (imported, or fine-tuned by a grid cell) on disk in our own terms.

    model.safetensors     our parameters, float32, keyed by "/"-joined nnx path (blocks/0/attention/query/kernel)
    scaling_model.json    {"format": 1, "architecture", "config": ModelConfig fields, "hf_config", "source"}
    tokenizer files       copied verbatim from the checkpoint (files.TOKENIZER_FILES)

`hf_config` is the checkpoint's original config.json, so export writes back every field we do not model;
a model that never came from Hugging Face has {} there and architecture "llama".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from scaling.trainer.checkpoint import key_names
from scaling.trainer.config import ModelConfig
from scaling.errors import UserError
from scaling.hf.architectures import SUPPORTED
from scaling.hf.files import SafetensorsReader, copy_tokenizer_files, read_json, write_safetensors
from scaling.hf.gguf import is_gguf, write_gguf_tokenizer
from scaling.staging import staged_folder
from scaling.trainer.model import Transformer

FORMAT = 1  # scaling_model.json "format": bumped when the folder layout changes
MODEL_FILE, META_FILE = "model.safetensors", "scaling_model.json"


@dataclass(frozen=True)
class BaseModel:
    """A model with its parameters in memory, and what export needs to write it back as a checkpoint."""

    cfg: ModelConfig  # max_len = the checkpoint's max_position_embeddings / n_positions
    params: nnx.State  # float32, the same tree as scaling.trainer.model.init_model(cfg, seed)[1]
    architecture: str  # an HF model_type of scaling.hf.architectures.SUPPORTED ("llama", "gemma3_text", ...)
    hf_config: dict  # the original config.json, kept for export ({} for a model not from Hugging Face)


def _name(path) -> str:
    """A parameter's pytree path as "/"-joined names (the Variable's trailing `.value` left out)."""
    return "/".join(key_names([key for key in path if not isinstance(key, jax.tree_util.GetAttrKey)]))


def abstract_params(cfg: ModelConfig) -> nnx.State:
    """The parameter tree of `cfg` as shapes only: no initialization, no memory.

    Blocks are alike, so one is traced and repeated: tracing every block's initializers takes seconds
    for a deep model (3.5 s for 24 layers), and a grid cell loads its base model each time it starts.
    """
    # Layer types (full or sliding attention) change no parameter's shape: the one block traced is a full one.
    one_block = dataclasses.replace(cfg, n_layers=1, layer_types=(), sliding_window=0)
    one = nnx.split(nnx.eval_shape(lambda: Transformer(one_block, nnx.Rngs(params=0))))[1]
    flat = list(nnx.to_flat_state(one))
    outside = [(path, leaf) for path, leaf in flat if path[0] != "blocks"]
    blocks = [(("blocks", i, *path[2:]), leaf) for i in range(cfg.n_layers) for path, leaf in flat if path[0] == "blocks"]
    return nnx.from_flat_state(outside + blocks)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    return {_name(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_params(cfg))[0]}


def params_from(cfg: ModelConfig, arrays: dict[str, jax.Array]) -> nnx.State:
    """The parameter tree of `cfg` holding `arrays` (one per parameter path)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: arrays[_name(path)], abstract_params(cfg))


def param_arrays(params: nnx.State) -> Iterator[tuple[str, np.ndarray]]:
    """(path, float32 array) for every parameter, one at a time."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        yield _name(path), np.asarray(leaf, np.float32)


def write_meta(folder: Path, cfg: ModelConfig, architecture: str, hf_config: dict, source: str) -> None:
    meta = {"format": FORMAT, "architecture": architecture, "config": dataclasses.asdict(cfg), "hf_config": hf_config,
            "source": source}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def read_meta(path: Path) -> tuple[ModelConfig, str, dict]:
    """(cfg, architecture, hf_config) of a model folder."""
    if not (path / META_FILE).is_file():
        raise UserError(f"{path} is not a model folder (no {META_FILE}); `scaling import-hf` writes one")
    meta = read_json(path / META_FILE, "model folder metadata")
    if meta.get("format") != FORMAT:
        raise UserError(f"{path / META_FILE} has format {meta.get('format')!r}; this version reads format {FORMAT}")
    if meta.get("architecture") not in SUPPORTED:
        raise UserError(f"{path / META_FILE} names architecture {meta.get('architecture')!r}; supported: {', '.join(SUPPORTED)}")
    try:
        cfg = ModelConfig(**meta["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path / META_FILE} has no valid model config ({error})") from None
    return cfg, meta["architecture"], meta.get("hf_config") or {}


def open_params(path: Path, cfg: ModelConfig) -> SafetensorsReader:
    """A reader of a model folder's parameters, checked to be exactly the float32 tree of `cfg`."""
    reader = SafetensorsReader([path / MODEL_FILE]) if (path / MODEL_FILE).is_file() else None
    if reader is None:
        raise UserError(f"{path} has no {MODEL_FILE}")
    expected = param_shapes(cfg)
    found = {name: info.shape for name, info in reader.tensors.items() if info.dtype == "F32"}
    if found != expected:
        wrong = sorted(set(expected.items()) ^ set(found.items()))[0][0]
        raise UserError(f"{path / MODEL_FILE} does not match {META_FILE}: parameter {wrong} is missing, extra or misshapen")
    return reader


def load_model_folder(path: Path) -> BaseModel:
    """A model folder's model, parameters in memory as float32."""
    path = Path(path)
    cfg, architecture, hf = read_meta(path)
    reader = open_params(path, cfg)
    try:
        arrays = {name: jax.device_put(reader.read(name)) for name in reader.tensors}
    finally:
        reader.close()
    return BaseModel(cfg, params_from(cfg, arrays), architecture, hf)


def save_model_folder(out: Path, model: BaseModel, tokenizer_from: Path | None, *, source: str = "") -> Path:
    """Write `model` as a model folder at `out` (which must not exist, or be empty), atomically."""
    out = Path(out)
    shapes = param_shapes(model.cfg)
    with staged_folder(out, None, "a model folder") as scratch:
        write_safetensors(scratch / MODEL_FILE, shapes, param_arrays(model.params))
        write_meta(scratch, model.cfg, model.architecture, model.hf_config, source)
        if tokenizer_from is not None:
            write_tokenizer_files(Path(tokenizer_from), scratch)
    return out


def write_tokenizer_files(source: Path, destination: Path) -> None:
    """A checkpoint's tokenizer files, copied from its folder or built from a GGUF file's metadata."""
    if is_gguf(source):
        write_gguf_tokenizer(source, destination)
    else:
        copy_tokenizer_files(source, destination)


def describe(path: Path) -> str:
    """A model folder's architecture and size, in a few words."""
    cfg, architecture, _ = read_meta(Path(path))
    return f"{architecture}, {cfg.total_params / 1e6:.2f}M params, {cfg.n_layers} layers, vocab {cfg.vocab_size}"
