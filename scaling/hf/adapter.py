"""LoRA adapters in PEFT's format: an adapter folder, and a full checkpoint with the adapters merged in.

An adapter folder is what a LoRA cell keeps of its final model: PEFT's `adapter_model.safetensors` and
`adapter_config.json` (so `peft.PeftModel.from_pretrained(base, folder)` loads it as it is), and our
`scaling_adapter.json`: the base it was trained on (a reference, never a copy of its weights), the model config and
the LoraConfig. PEFT names a module by its Hugging Face path (`base_model.model.model.layers.0.self_attn.q_proj`),
found here from the architecture's tensor table; a projection a checkpoint fuses with others (GPT-NeoX's
query_key_value, GPT-2's c_attn) has no module of its own to adapt, and is refused.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.errors import UserError
from scaling.hf.architectures import ARCHITECTURES
from scaling.hf.files import SafetensorsReader, write_safetensors
from scaling.staging import staged_folder
from scaling.trainer.config import LoraConfig, ModelConfig
from scaling.trainer.lora import adapter_arrays, lora_graph, merged_params, split_adapter

PEFT_WEIGHTS, PEFT_CONFIG, META_FILE = "adapter_model.safetensors", "adapter_config.json", "scaling_adapter.json"
FORMAT = 1
PREFIX = "base_model.model."  # PEFT's wrapper (PeftModelForCausalLM.base_model.model) before the HF module path
_HOLDERS = {"query": "attention", "key": "attention", "value": "attention", "out": "attention", "gate": "mlp",
            "up": "mlp", "down": "mlp"}


def peft_modules(architecture: str, cfg: ModelConfig, targets: tuple[str, ...]) -> dict[str, str]:
    """{our projection path "blocks/i/attention/query": its HF module "model.layers.i.self_attn.q_proj"} of every
    targeted projection; a UserError where the architecture fuses one with others or holds it in no nn.Linear."""
    table = ARCHITECTURES[architecture].tensors(cfg)
    holding = {path: tensor for tensor in table for path in tensor.ours}
    modules = {}
    for layer in range(cfg.n_layers):
        for target in targets:
            ours = f"blocks/{layer}/{_HOLDERS[target]}/{target}"
            tensor = holding.get(f"{ours}/kernel")
            if tensor is None:
                raise UserError(f"adapter target {target!r}: {architecture} has no such projection")
            if len(tensor.ours) > 1:
                raise UserError(f"adapter target {target!r}: {architecture} fuses it with other projections in "
                                f"{tensor.name.removesuffix('.weight')}, which PEFT cannot adapt alone")
            probe = np.arange(np.prod(tensor.shape), dtype=np.float32).reshape(tensor.shape[::-1])
            if not np.array_equal(tensor.fuse(probe), probe.T):  # HF nn.Linear: weight [out, in] = our kernel.T
                raise UserError(f"adapter target {target!r}: {architecture} holds it in {tensor.name}, not an "
                                "nn.Linear (PEFT adapts those here)")
            modules[ours] = tensor.name.removesuffix(".weight")
    return modules


def peft_config(lora: LoraConfig, modules: dict[str, str], base: str) -> dict:
    """adapter_config.json: PEFT's LoraConfig, its defaults written out where they matter to loading."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank, "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout, "target_modules": sorted({m.rsplit(".", 1)[-1] for m in modules.values()}),
            "base_model_name_or_path": base, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
            "init_lora_weights": True, "modules_to_save": None, "use_rslora": False, "use_dora": False,
            "revision": None}


def peft_tensors(params: nnx.State, modules: dict[str, str]) -> dict[str, np.ndarray]:
    """PEFT's tensors of an adapted model's adapters: lora_A.weight [r, in] = A.T, lora_B.weight [out, r] = B.T."""
    tensors = {}
    for (layer, holder, projection), (a, b) in adapter_arrays(split_adapter(params)[0]).items():
        module = PREFIX + modules[f"blocks/{layer}/{holder}/{projection}"]
        tensors[f"{module}.lora_A.weight"] = np.ascontiguousarray(a.T, np.float32)
        tensors[f"{module}.lora_B.weight"] = np.ascontiguousarray(b.T, np.float32)
    return tensors


def save_adapter_folder(out: Path, cfg: ModelConfig, lora: LoraConfig, params: nnx.State, architecture: str,
                        hf_config: dict, base: Path, *, source: str = "") -> Path:
    """Write an adapted model's adapters as an adapter folder at `out` (new or empty), atomically; `base` is the
    checkpoint (a Hugging Face folder or GGUF file) or model folder the adapters were trained on."""
    modules = peft_modules(architecture, cfg, lora.targets)
    tensors = peft_tensors(params, modules)
    meta = {"format": FORMAT, "model": dataclasses.asdict(cfg), "adapter": dataclasses.asdict(lora),
            "architecture": architecture, "hf_config": hf_config, "base": str(Path(base).resolve()), "source": source}
    with staged_folder(Path(out), None, "an adapter folder") as scratch:
        write_safetensors(scratch / PEFT_WEIGHTS, {k: v.shape for k, v in tensors.items()}, tensors.items(),
                          {"format": "pt"})
        (scratch / PEFT_CONFIG).write_text(json.dumps(peft_config(lora, modules, meta["base"]), indent=2) + "\n")
        (scratch / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return Path(out)


def is_adapter_folder(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_adapter_folder(path: Path) -> tuple[dict, ModelConfig, LoraConfig]:
    """An adapter folder's metadata, model config and adapter config; a UserError where it is not one."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
        cfg = ModelConfig(**meta["model"])
        lora = LoraConfig(**{**meta["adapter"], "targets": tuple(meta["adapter"]["targets"])})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is no readable adapter folder ({type(error).__name__})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: adapter folder format {meta.get('format')!r}, this version reads {FORMAT}")
    return meta, cfg, lora


def adapted_model(path: Path):
    """(graphdef, params, cfg, lora, meta) of an adapter folder: its base's weights read from the base, the
    adapters from PEFT's file."""
    from scaling.hf.convert import read_hf_checkpoint
    from scaling.hf.folder import META_FILE as MODEL_META, load_model_folder

    meta, cfg, lora = read_adapter_folder(path)
    base_path = Path(meta["base"])
    if not base_path.exists():
        raise UserError(f"{path}: its base {base_path} does not exist (an adapter folder refers to its base)")
    base = load_model_folder(base_path) if (base_path / MODEL_META).is_file() else read_hf_checkpoint(base_path)
    if base.cfg.vocab_size != cfg.vocab_size or base.cfg.d_model != cfg.d_model or base.cfg.n_layers != cfg.n_layers:
        raise UserError(f"{path}: its base {base_path} is not the model the adapters were trained on")
    graphdef, shapes, _ = lora_graph(cfg, lora)
    modules = peft_modules(meta["architecture"], cfg, lora.targets)
    reader = SafetensorsReader([Path(path) / PEFT_WEIGHTS])
    try:
        values = []
        leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
        for key_path, leaf in leaves:
            names = [str(getattr(k, "key", "")) for k in key_path]
            module = PREFIX + modules["/".join(names[:4])]
            which = "lora_A" if "lora_a" in names else "lora_B"
            array = reader.read(f"{module}.{which}.weight").T
            if array.shape != leaf.shape:
                raise UserError(f"{path}: {module}.{which}.weight is {list(array.shape)[::-1]}, expected "
                                f"{list(leaf.shape)[::-1]}")
            values.append(jnp.asarray(np.ascontiguousarray(array, np.float32)))
    except KeyError as missing:
        raise UserError(f"{path}: {PEFT_WEIGHTS} lacks {missing}") from None
    finally:
        reader.close()
    adapter = jax.tree_util.tree_unflatten(treedef, values)
    return graphdef, nnx.merge_state(base.params, adapter), cfg, lora, meta


def export_adapter(src: Path, out: Path, merge: bool) -> Path:
    """An adapter folder out as PEFT's adapter (the two PEFT files), or with `merge` as a full Hugging Face
    checkpoint of its base with W + (alpha / r) A B folded into each adapted weight."""
    from scaling.hf.convert import export_hf
    from scaling.hf.folder import BaseModel, save_model_folder

    meta, cfg, lora = read_adapter_folder(src)
    if not merge:
        with staged_folder(Path(out), None, "scaling export-hf") as scratch:
            for name in (PEFT_WEIGHTS, PEFT_CONFIG):
                (scratch / name).write_bytes((Path(src) / name).read_bytes())
        return Path(out)
    _, params, cfg, lora, meta = adapted_model(src)
    merged = BaseModel(cfg, merged_params(params, lora), meta["architecture"], meta["hf_config"])
    with tempfile.TemporaryDirectory() as scratch:
        folder = save_model_folder(Path(scratch) / "merged", merged, Path(meta["base"]), source=f"{src} merged")
        return export_hf(folder, out)
