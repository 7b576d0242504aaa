"""Hugging Face checkpoints in and out: check, read or import a local checkpoint folder or GGUF file, export
a model folder.

Nothing here reaches the network or runs a checkpoint's code: the folder's config.json is read as data,
its weights as safetensors (or as PyTorch `.bin` through the weights-only unpickler); a GGUF file's
metadata and tensors go through `scaling.hf.gguf`. Tensors are converted one at a time, so a conversion
holds about one copy of the model at its peak: the params it returns, or, when writing a folder, a
single tensor.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

from scaling.trainer.config import ModelConfig
from scaling.errors import UserError
from scaling.staging import staged_folder
from scaling.hf.architectures import (
    ARCHITECTURES,
    Architecture,
    Tensor,
    architecture_of,
    canonical_name,
    hf_config,
    is_buffer,
)
from scaling.hf.files import (
    FLOAT_DTYPES,
    SAFETENSORS,
    TensorInfo,
    checkpoint_folder,
    copy_tokenizer_files,
    open_weights,
    read_json,
    weight_files,
    write_safetensors,
)
from scaling.hf.gguf import GgufReader, gguf_config, is_gguf
from scaling.hf.folder import (
    MODEL_FILE,
    BaseModel,
    open_params,
    param_shapes,
    params_from,
    read_meta,
    write_meta,
    write_tokenizer_files,
)

def checkpoint_config(path: Path) -> tuple[dict, Architecture, ModelConfig]:
    """A checkpoint's config.json (a GGUF file's as transformers derives it), its architecture and our config
    of it (no weights read)."""
    path = Path(path)
    if is_gguf(path):
        hf = gguf_config(path)
    else:
        hf = read_json(checkpoint_folder(path) / "config.json", "the checkpoint's model config")
    arch = architecture_of(hf)
    return hf, arch, arch.model_config(hf)


@contextlib.contextmanager
def _open_checkpoint(path: Path, hf: dict, arch: Architecture, cfg: ModelConfig):
    """A reader of a checkpoint's tensors by checkpoint name: a folder's weight files, or a GGUF file's
    tensors under the names the architecture expects."""
    if not is_gguf(path):
        with open_weights(path) as reader:
            yield reader
        return
    reader = GgufReader(path, hf, [tensor.name for tensor in arch.tensors(cfg)])
    try:
        yield reader
    finally:
        reader.close()


def _match(arch: Architecture, cfg: ModelConfig, tensors: dict[str, TensorInfo]) -> dict[str, str]:
    """Checkpoint name of every tensor the architecture needs; UserError naming the first that is missing,
    unexpected, misshapen or not a float tensor."""
    found: dict[str, str] = {}
    for name in tensors:
        if is_buffer(arch, cfg, name):
            continue
        wanted = canonical_name(arch, name)
        if wanted in found:
            raise UserError(f"the checkpoint holds {wanted} twice (as {found[wanted]} and {name})")
        found[wanted] = name
    table = arch.tensors(cfg)
    expected = {t.name for t in table}
    unexpected = [name for wanted, name in found.items() if wanted not in expected]
    if unexpected:
        raise UserError(f"unexpected tensor {unexpected[0]} in the checkpoint ({len(unexpected)} in all) for this "
                        f"{arch.name} config.json")
    for tensor in table:
        if tensor.name not in found:
            raise UserError(f"the checkpoint lacks tensor {tensor.name}")
        info = tensors[found[tensor.name]]
        if info.dtype not in FLOAT_DTYPES:
            raise UserError(f"tensor {found[tensor.name]} has dtype {info.dtype}; only {', '.join(FLOAT_DTYPES)} "
                            "are supported (quantized checkpoints are not)")
        if info.shape != tensor.shape:
            raise UserError(f"tensor {found[tensor.name]} has shape {list(info.shape)}, config.json implies "
                            f"{list(tensor.shape)}")
    return {tensor.name: found[tensor.name] for tensor in table}


def _split(table: list[Tensor], names: dict[str, str], read) -> Iterator[tuple[str, np.ndarray]]:
    """Our parameters, in table order, from reading each checkpoint tensor once."""
    for tensor in table:
        parts = tensor.split(read(names[tensor.name]))
        yield from zip(tensor.ours, parts, strict=True)


def _in_table_order(cfg: ModelConfig, table: list[Tensor]) -> dict[str, tuple[int, ...]]:
    shapes = param_shapes(cfg)
    order = [path for tensor in table for path in tensor.ours]
    assert sorted(order) == sorted(shapes), f"tensor table and model disagree: {set(order) ^ set(shapes)}"
    return {path: shapes[path] for path in order}


def check_hf_checkpoint(path: Path) -> str:
    """The architecture of a local checkpoint folder, after checking its config.json and weight files
    (safetensors headers in full: every tensor's name, shape and dtype) without reading any weights."""
    path = Path(path)
    hf, arch, cfg = checkpoint_config(path)
    if is_gguf(path) or weight_files(path)[0] == "safetensors":
        with _open_checkpoint(path, hf, arch, cfg) as reader:
            _match(arch, cfg, reader.tensors)
    return arch.name


def read_hf_checkpoint(path: Path) -> BaseModel:
    """A local checkpoint folder's model, parameters in memory as float32."""
    path = Path(path)
    hf, arch, cfg = checkpoint_config(path)
    table = arch.tensors(cfg)
    _in_table_order(cfg, table)
    with _open_checkpoint(path, hf, arch, cfg) as reader:
        names = _match(arch, cfg, reader.tensors)
        # Each converted tensor moves into a jax array at once, so numpy holds one tensor at a time. Laid out
        # by numpy first: jnp.asarray of a transposed view would trace and compile a transpose per shape.
        arrays = {name: jax.device_put(np.ascontiguousarray(array)) for name, array in _split(table, names, reader.read)}
    return BaseModel(cfg, params_from(cfg, arrays), arch.name, hf)


def fine_tuned_model(cfg: ModelConfig, params, base_checkpoint: Path | None) -> BaseModel:
    """A model fine-tuned from a base, as this package writes it: a checkpoint base's model keeps the
    checkpoint's architecture and config.json (so it exports as a checkpoint of the same kind); a preset's
    model, which never came from Hugging Face, is the Llama it is."""
    if base_checkpoint is None:
        return BaseModel(cfg, params, "llama", {})
    hf, arch, _ = checkpoint_config(base_checkpoint)
    return BaseModel(cfg, params, arch.name, hf)


def import_hf(path: Path, out: Path) -> Path:
    """Convert a local checkpoint folder or GGUF file into a model folder at `out`, streaming one tensor at a time."""
    path, out = Path(path), Path(out)
    hf, arch, cfg = checkpoint_config(path)
    table = arch.tensors(cfg)
    shapes = _in_table_order(cfg, table)
    with _open_checkpoint(path, hf, arch, cfg) as reader:
        names = _match(arch, cfg, reader.tensors)
        with staged_folder(out, None, "scaling import-hf") as scratch:
            write_safetensors(scratch / MODEL_FILE, shapes, _split(table, names, reader.read))
            write_meta(scratch, cfg, arch.name, hf, str(path.resolve()))
            write_tokenizer_files(path, scratch)
    return out


def export_hf(src: Path, out: Path) -> Path:
    """Write a model folder as a Hugging Face checkpoint at `out`: config.json, model.safetensors (HF names,
    fused where HF fuses, tied embeddings stored once) and the tokenizer files."""
    src, out = Path(src), Path(out)
    cfg, architecture, original = read_meta(src)
    arch = ARCHITECTURES[architecture]
    config = hf_config(arch, cfg, original)  # before any writing: a native model Llama cannot express fails here
    table = arch.tensors(cfg)
    reader = open_params(src, cfg)
    try:
        fused = ((t.name, np.asarray(t.fuse(*(reader.read(p) for p in t.ours)))) for t in table)
        with staged_folder(out, None, "scaling export-hf") as scratch:
            write_safetensors(scratch / SAFETENSORS, {t.name: t.shape for t in table}, fused, {"format": "pt"})
            (scratch / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            copy_tokenizer_files(src, scratch)
    finally:
        reader.close()
    return out
