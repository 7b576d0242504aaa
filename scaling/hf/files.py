"""Checkpoint files, one tensor at a time: a safetensors reader and a streaming writer, PyTorch `.bin`
weights through `torch.load(weights_only=True, mmap=True)`, tokenizer files, and atomic output folders.

safetensors is an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}} (offsets relative to the end of the header), then the raw little-endian data. Reading it
by hand with `readinto` into a fresh buffer keeps one tensor resident at a time: a memory map would
leave every page it touched counted in the process's resident memory until it is unmapped.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import shutil
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import ml_dtypes
import numpy as np

from scaling.errors import UserError
from scaling.user_files import file_mode, kind_of, regular_file


SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_BIN, TORCH_BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
# Copied verbatim between checkpoint and model folders when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja", "chat_template.json")

# Float dtypes converted (exactly) to float32; anything else (int8, fp8, ...) is a quantized or foreign checkpoint.
FLOAT_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype(ml_dtypes.bfloat16)}
_MAX_HEADER = 100 << 20  # bytes; a longer header is a corrupt or foreign file, not a bigger model


class TensorInfo(NamedTuple):
    dtype: str  # safetensors dtype name: F32, BF16, I8, ...
    shape: tuple[int, ...]


class _Span(NamedTuple):
    file: Path
    start: int  # absolute byte offset of the tensor's data in `file`
    info: TensorInfo


def weight_files(folder: Path) -> tuple[str, list[Path]]:
    """("safetensors" | "bin", the weight files) of a checkpoint folder, safetensors preferred."""
    for kind, single, index in (("safetensors", SAFETENSORS, SAFETENSORS_INDEX), ("bin", TORCH_BIN, TORCH_BIN_INDEX)):
        if _present(folder / index, "the shard index"):
            try:
                shards = sorted(set(read_json(folder / index, "the shard index")["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise UserError(f"{folder / index} is not a readable weight index") from None
            missing = [name for name in shards if not _present(folder / name, "a weight shard")]
            if missing:
                raise UserError(f"{folder} lacks weight shard {missing[0]} listed in {index}")
            return kind, [folder / name for name in shards]
        if _present(folder / single, "the weights"):
            return kind, [folder / single]
    raise UserError(f"{folder} has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX}, {TORCH_BIN} or {TORCH_BIN_INDEX})")


def checkpoint_folder(path: Path) -> Path:
    """path, once `os.stat` shows a folder; else a UserError saying what it is instead (missing, a file, a FIFO...)."""
    mode = file_mode(path, "checkpoint folder")
    if not stat.S_ISDIR(mode):
        raise UserError(f"{path} is {kind_of(mode)}, not a checkpoint folder (give a local Hugging Face checkpoint "
                        f"folder or a .gguf file)")
    return path


def _present(path: Path, what: str) -> bool:
    """Whether a checkpoint's file is there; one that is there but is no regular file (a FIFO, a device, a folder)
    is refused by name, never opened."""
    if not path.exists():
        return False
    regular_file(path, what)
    return True


def _safetensors_spans(file: Path) -> dict[str, _Span]:
    """Every tensor's place in one safetensors file, checked against the file's size."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER or 8 + length > size:
                raise ValueError("header length")
            header = json.loads(f.read(length))
        spans = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            info = TensorInfo(str(entry["dtype"]), tuple(int(n) for n in entry["shape"]))
            if any(n < 0 for n in info.shape):
                raise ValueError(f"shape of {name}")
            itemsize = FLOAT_DTYPES[info.dtype].itemsize if info.dtype in FLOAT_DTYPES else None
            if not 0 <= begin <= end <= size - 8 - length or (itemsize and end - begin != math.prod(info.shape) * itemsize):
                raise ValueError(f"offsets of {name}")
            spans[name] = _Span(file, 8 + length + begin, info)
        return spans
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        raise UserError(f"{file} is not a valid safetensors file") from None


class SafetensorsReader:
    """The tensors of one or more safetensors files, read one at a time as float32 arrays."""

    def __init__(self, files: list[Path]):
        self._spans: dict[str, _Span] = {}
        for file in files:
            for name, span in _safetensors_spans(file).items():
                if name in self._spans:
                    raise UserError(f"tensor {name} appears in both {self._spans[name].file.name} and {file.name}")
                self._spans[name] = span
        self._handles: dict[Path, object] = {}
        self.tensors = {name: span.info for name, span in self._spans.items()}

    def read(self, name: str) -> np.ndarray:
        span = self._spans[name]
        buffer = np.empty(span.info.shape, FLOAT_DTYPES[span.info.dtype])
        if span.file not in self._handles:
            self._handles[span.file] = open(span.file, "rb")  # noqa: SIM115 closed by close()
        handle = self._handles[span.file]
        handle.seek(span.start)
        if handle.readinto(buffer.reshape(-1).view(np.uint8)) != buffer.nbytes:
            raise UserError(f"{span.file} ends inside tensor {name}")
        return buffer if buffer.dtype == np.float32 else buffer.astype(np.float32)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


class TorchBinReader:
    """The tensors of PyTorch `.bin` files, loaded as weights only (no pickled code runs) and memory-mapped."""

    def __init__(self, files: list[Path]):
        import torch  # only `.bin` checkpoints need it

        self._torch = torch
        self._tensors: dict[str, object] = {}
        for file in files:
            for name, tensor in self._load(file).items():
                if name in self._tensors:
                    raise UserError(f"tensor {name} appears in two weight files")
                self._tensors[name] = tensor
        self.tensors = {name: TensorInfo(_torch_dtype_name(t.dtype), tuple(t.shape)) for name, t in self._tensors.items()}

    def _load(self, file: Path) -> dict:
        torch = self._torch
        try:
            # The weights-only unpickler warns of any pickle it was not written by (say protocol 4, as plain `pickle`
            # writes): it then loads it or refuses it, and either way the one line below says all the user needs.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as error:
                    if "mmap" not in str(error):
                        raise
                    # The pre-1.6 (non-zip) format cannot be memory-mapped; it is read whole.
                    state = torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
            # The weights-only unpickler refuses anything but tensors and plain containers: reported, never run.
            raise UserError(f"{file} is not a loadable PyTorch weights file ({type(error).__name__})") from None
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise UserError(f"{file} does not hold a dictionary of tensors")
        return state

    def read(self, name: str) -> np.ndarray:
        return self._tensors[name].to(self._torch.float32).numpy()

    def close(self) -> None:
        self._tensors.clear()


def _torch_dtype_name(dtype) -> str:
    """The safetensors name of a torch dtype (float32 -> F32, int8 -> I8, ...)."""
    import torch

    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int8: "I8", torch.uint8: "U8", torch.int32: "I32", torch.int64: "I64", torch.bool: "BOOL"}
    return names.get(dtype, str(dtype).removeprefix("torch."))


@contextlib.contextmanager
def open_weights(folder: Path) -> Iterator[SafetensorsReader | TorchBinReader]:
    """A reader of the checkpoint weights in `folder` (safetensors, or `.bin` only where there are none)."""
    kind, files = weight_files(folder)
    reader = SafetensorsReader(files) if kind == "safetensors" else TorchBinReader(files)
    try:
        yield reader
    finally:
        reader.close()


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], arrays: Iterable[tuple[str, np.ndarray]],
                      metadata: dict[str, str] | None = None) -> None:
    """Write float32 tensors to a safetensors file as `arrays` yields them, holding only one at a time.

    The header is written first from `shapes`, so `arrays` must yield exactly those names, in that order.
    """
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data then starts 8-byte aligned, as the format recommends
    order = iter(shapes.items())
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name, array in arrays:
            expected_name, expected_shape = next(order)
            assert (name, tuple(array.shape)) == (expected_name, tuple(expected_shape)), (name, array.shape, expected_name)
            f.write(np.ascontiguousarray(array, dtype="<f4").reshape(-1).view(np.uint8).data)
    assert next(order, None) is None, "write_safetensors: fewer arrays than shapes"


def read_json(file: Path, what: str, missing_ok: bool = False) -> dict:
    """The JSON object in file; a missing file is a UserError ({} with missing_ok), and so is anything
    unreadable, malformed or not an object."""
    if not file.exists():
        if missing_ok:
            return {}
        raise UserError(f"{file.parent} has no {file.name} ({what})")
    try:
        text = regular_file(file, what).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{file} is unreadable ({what}: {type(error).__name__})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{file} is malformed JSON ({what}: {error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{file} must hold a JSON object, not {type(value).__name__} ({what})")
    return value


def copy_tokenizer_files(source: Path, destination: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)
