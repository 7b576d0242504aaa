"""GGUF files (llama.cpp's single-file format) as Hugging Face checkpoints: the config, the tokenizer and
float32 weights, exactly as `transformers` derives them from the file.

Nothing here re-implements GGUF: the `gguf` package reads the file (memory-mapped) and dequantizes each
tensor, `transformers`' GGUF loader turns the metadata into a config.json and a tokenizer, and its tensor
processors undo what llama.cpp's converter did to the layout (Llama's query/key rows are permuted for
llama.cpp's rotary; GPT-2's Conv1D weights are transposed). Tensors are dequantized one at a time, so a
conversion holds one float32 tensor plus the pages of the (quantized, much smaller) file it has read.

Gemma 3: llama.cpp stores its (1 + w) norm scales whole, and transformers' tensor processor for gemma3 takes
the 1 back off every `*norm.weight`, q/k norms included; the file's config is read as gemma3_text (text only).

Supported: the architectures both `transformers`' GGUF loader and our model run (llama, qwen2, qwen3, gemma3,
gpt2), and
the tensor types `gguf` dequantizes (GGUF_TYPES). Anything else is refused in one line before any work.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scaling.errors import UserError, first_line
from scaling.user_files import regular_file
from scaling.hf.files import TensorInfo

SUFFIX = ".gguf"
ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3", "gpt2")  # GGUF general.architecture values we import
# The tensor types the `gguf` package dequantizes to float32 (gguf.quants.dequantize); the integer types and
# the intermediate Q8_1/Q8_K types have no dequantizer there and are refused.
GGUF_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
              "Q6_K", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS",
              "TQ1_0", "TQ2_0", "MXFP4")
_OUTPUT = "output.weight"  # the untied output layer: no tensor processor touches it


def is_gguf(path: Path) -> bool:
    """Whether a checkpoint path names a GGUF file rather than a checkpoint folder."""
    return Path(path).suffix.lower() == SUFFIX


def file_stamp(path: Path) -> tuple[str, int, int]:
    """A cache key that changes when the file does."""
    path = Path(path)
    stat = regular_file(path, "GGUF file").stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def _alone(path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, name) of the GGUF file linked into an empty private folder: transformers' loaders read only
    that file's metadata, never a config.json, tokenizer or code that happens to lie beside it."""
    with tempfile.TemporaryDirectory(prefix="scaling-gguf-") as folder:
        (Path(folder) / "model.gguf").symlink_to(Path(path).resolve())
        yield Path(folder), "model.gguf"


def _reader(path: Path):
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError) as error:
        raise UserError(f"{path} is not a readable GGUF file ({type(error).__name__}: {str(error)[:120]})") from None


def _architecture(reader, path: Path) -> str:
    field = reader.fields.get("general.architecture")
    if field is None:
        raise UserError(f"{path} lacks general.architecture (not a model GGUF file)")
    architecture = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    if architecture not in ARCHITECTURES:
        raise UserError(f"{path}: GGUF architecture {architecture!r} is not supported; supported: {', '.join(ARCHITECTURES)}")
    return architecture


def _check_types(reader, path: Path) -> None:
    for tensor in reader.tensors:
        if tensor.tensor_type.name not in GGUF_TYPES:
            raise UserError(f"{path}: tensor {tensor.name} has type {tensor.tensor_type.name}, which cannot be "
                            f"dequantized; supported types: {', '.join(GGUF_TYPES)}")


def gguf_config(path: Path) -> dict:
    """The config.json `transformers` derives from a GGUF file's metadata (no tensor data read)."""
    return dict(_config(*file_stamp(path)))


@functools.lru_cache(maxsize=4)
def _config(path: str, size: int, mtime: int) -> dict:
    reader = _reader(Path(path))
    _architecture(reader, Path(path))
    _check_types(reader, Path(path))
    from transformers import AutoConfig

    try:
        with _alone(Path(path)) as (folder, name):
            config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise UserError(f"{path}: transformers cannot read its config ({first_line(error)[:160]})") from None
    hf = config.to_dict()
    hf.pop("_name_or_path", None)  # a path on the machine that converted it: not part of the model
    return hf


class GgufReader:
    """The tensors of a GGUF file under their Hugging Face names (`tensors`: name -> float32 TensorInfo), each
    read as float32 by `read`. `hf_names` are the checkpoint names the architecture expects; a GGUF tensor
    that maps to none of them keeps its GGUF name (and is then reported as unexpected)."""

    def __init__(self, path: Path, hf: dict, hf_names: list[str]):
        from gguf import MODEL_ARCH_NAMES, get_tensor_name_map
        from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

        path = Path(path)
        file_stamp(path)
        self._file = _reader(path)
        architecture = _architecture(self._file, path)
        _check_types(self._file, path)
        self._processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=hf)
        arch = next(key for key, name in MODEL_ARCH_NAMES.items() if name == architecture)
        name_map = get_tensor_name_map(arch, int(hf["num_hidden_layers"]))
        hf_name_of = {}
        for hf_name in hf_names:
            stem, _, suffix = hf_name.rpartition(".")
            gguf_stem = name_map.get_name(stem)
            if gguf_stem is not None:
                hf_name_of[f"{gguf_stem}.{suffix}"] = hf_name
        self._tensors = {hf_name_of.get(t.name, t.name): t for t in self._file.tensors}
        self.tensors = {name: TensorInfo("F32", self._processed(t, np.empty(_numpy_shape(t), np.float32)).shape)
                        for name, t in self._tensors.items()}

    def _processed(self, tensor, weights: np.ndarray) -> np.ndarray:
        if tensor.name == _OUTPUT:
            return weights
        return self._processor.process(weights=weights, name=tensor.name).weights

    def read(self, name: str) -> np.ndarray:
        from gguf import dequantize

        tensor = self._tensors[name]
        weights = self._processed(tensor, dequantize(tensor.data, tensor.tensor_type))
        return np.asarray(weights, dtype=np.float32)

    def close(self) -> None:
        self._tensors.clear()
        self._file = None


def _numpy_shape(tensor) -> tuple[int, ...]:
    """A GGUF tensor's shape in numpy (row-major) order: GGUF lists dimensions fastest-first."""
    return tuple(int(n) for n in reversed(tensor.shape))


def write_gguf_tokenizer(path: Path, destination: Path) -> None:
    """The tokenizer files (tokenizer.json, tokenizer_config.json, chat_template.jinja) `transformers` builds
    from a GGUF file's tokenizer metadata, written into the folder `destination`."""
    from transformers import AutoTokenizer

    file_stamp(path)
    try:
        with _alone(Path(path)) as (folder, name):
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                      trust_remote_code=False)
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise UserError(f"{path}: transformers cannot build its tokenizer ({first_line(error)[:160]})") from None
    tokenizer.save_pretrained(destination)
