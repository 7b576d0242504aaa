"""Model folders back out as Hugging Face checkpoints, and the import-hf / export-hf commands' contract."""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
import transformers
from hf_helpers import CASES, hf_logits, hf_model, save, tokens

from scaling.cli import main
from scaling.trainer.config import ModelConfig, preset
from scaling.errors import UserError
from scaling.hf import BaseModel, check_hf_checkpoint, export_hf, import_hf, load_model_folder, save_model_folder
from scaling.hf.folder import param_arrays
from scaling.trainer.model import init_model, logits


@pytest.mark.parametrize("case", CASES)
def test_import_then_export_gives_transformers_the_same_model(tmp_path, case):
    hf = hf_model(case)
    original = save(hf, tmp_path / "hf")
    exported = export_hf(import_hf(original, tmp_path / "ours"), tmp_path / "exported")
    with safetensors.safe_open(original / "model.safetensors", "numpy") as a, \
            safetensors.safe_open(exported / "model.safetensors", "numpy") as b:
        assert sorted(a.keys()) == sorted(b.keys())  # HF names, fused as HF fuses, tied embeddings stored once
        for name in a.keys():
            np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name))
    assert (exported / "tokenizer.json").read_bytes() == (original / "tokenizer.json").read_bytes()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    assert reloaded.dtype == torch.float32
    prompt_BxT = tokens((2, 12), seed=3)
    np.testing.assert_allclose(hf_logits(reloaded, prompt_BxT), hf_logits(hf, prompt_BxT), atol=1e-4, rtol=0)


def test_a_native_model_exports_as_llama(tmp_path):
    cfg = preset("tiny", vocab_size=97, max_len=32)
    graphdef, params = init_model(cfg, seed=0)
    folder = save_model_folder(tmp_path / "native", BaseModel(cfg, params, "llama", {}), tokenizer_from=None)
    assert load_model_folder(folder).cfg == cfg
    exported = export_hf(folder, tmp_path / "exported")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    assert type(reloaded).__name__ == "LlamaForCausalLM"
    prompt_BxT = np.random.default_rng(0).integers(0, 97, (2, 10))
    ours = logits(params, jnp.asarray(prompt_BxT), jnp.broadcast_to(jnp.arange(10), (2, 10)), jnp.ones((2, 10), jnp.int32),
                  graphdef=graphdef)
    np.testing.assert_allclose(hf_logits(reloaded, prompt_BxT), np.asarray(ours), atol=1e-4, rtol=0)


def test_a_native_model_llama_cannot_express_is_refused_before_writing(tmp_path):
    cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=32, max_len=8, norm="layer")
    folder = save_model_folder(tmp_path / "native", BaseModel(cfg, init_model(cfg, 0)[1], "llama", {}), None)
    with pytest.raises(UserError, match="cannot be written as a Llama checkpoint: it sets norm"):
        export_hf(folder, tmp_path / "exported")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["native"]


def test_a_fine_tuned_model_saved_by_a_cell_exports_its_new_weights(tmp_path):
    imported = import_hf(save(hf_model("gpt2_tied_learned_positions"), tmp_path / "hf"), tmp_path / "ours")
    model = load_model_folder(imported)
    bumped = BaseModel(model.cfg, jax.tree.map(lambda x: x * 1.5, model.params), model.architecture, model.hf_config)
    tuned = save_model_folder(tmp_path / "tuned", bumped, tokenizer_from=imported)
    assert (tuned / "tokenizer.json").is_file()
    exported = export_hf(tuned, tmp_path / "exported")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    np.testing.assert_array_equal(reloaded.transformer.wpe.weight.detach().numpy(),
                                  dict(param_arrays(bumped.params))["position_embed/embedding"])


# --- the commands --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save(hf_model("llama_gqa_untied"), tmp_path_factory.mktemp("llama") / "hf")


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _edit_weights(folder, edit):
    with safetensors.safe_open(folder / "model.safetensors", "pt") as f:
        state = {name: f.get_tensor(name) for name in f.keys()}
    edit(state)
    safetensors.torch.save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


class _RunsCode:
    def __reduce__(self):
        return (print, ("unpickling ran code",))


def _pickle_code_into_bin(folder):
    """A `.bin` whose pickle would call a function: the weights-only unpickler must refuse it unrun."""
    (folder / "model.safetensors").unlink()
    torch.save({"model.norm.weight": torch.ones(64), "payload": _RunsCode()}, folder / "pytorch_model.bin")


def _to_int8(state):
    state["model.layers.0.mlp.up_proj.weight"] = state["model.layers.0.mlp.up_proj.weight"].to(torch.int8)


BAD = {
    "unsupported model_type": (lambda f: _edit_config(f, model_type="mistral"),
                               "model_type 'mistral' is not supported; supported: llama, qwen2, qwen3, gemma3_text, "
                               "gpt_neox, gpt2"),
    "missing config": (lambda f: (f / "config.json").unlink(), "has no config.json"),
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), "has no weights"),
    "mismatched shape": (lambda f: _edit_config(f, intermediate_size=100),
                         "tensor model.layers.0.mlp.gate_proj.weight has shape [96, 64], config.json implies [100, 64]"),
    "missing tensor": (lambda f: _edit_weights(f, lambda s: s.pop("model.norm.weight")),
                       "lacks tensor model.norm.weight"),
    "unexpected tensor": (lambda f: _edit_weights(f, lambda s: s.update(extra=torch.zeros(2))),
                          "unexpected tensor extra"),
    "int8 tensor": (lambda f: _edit_weights(f, _to_int8), "has dtype I8"),
    "quantization config": (lambda f: _edit_config(f, quantization_config={"quant_method": "bitsandbytes"}),
                            "quantized checkpoints"),
    "scaled rope": (lambda f: _edit_config(f, rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}),
                    "rope_parameters of type 'llama3' is not supported"),
    "attention bias": (lambda f: _edit_config(f, attention_bias=True), "attention_bias=true is not supported"),
    "code in a pickled .bin": (_pickle_code_into_bin, "pytorch_model.bin is not a loadable PyTorch weights file"),
    "not a safetensors file": (lambda f: (f / "model.safetensors").write_bytes(b"\x10" * 64), "not a valid safetensors"),
}


def _run(capsys, *args):
    status = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(err):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaling: error: "), err
    return lines[0]


@pytest.mark.parametrize("problem", BAD)
def test_bad_checkpoints_are_one_line_exit_2_and_leave_nothing(tmp_path, capsys, checkpoint, problem):
    folder = shutil.copytree(checkpoint, tmp_path / "hf")
    spoil, message = BAD[problem]
    spoil(folder)
    status, out, err = _run(capsys, "import-hf", folder, "--out", tmp_path / "ours")
    assert status == 2 and out == ""  # nothing printed: a refused pickle never ran
    assert message in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    if problem != "code in a pickled .bin":  # the fast check reads safetensors headers, never a pickle
        with pytest.raises(UserError, match=re.escape(message)):
            check_hf_checkpoint(folder)


# What Qwen3 and Gemma 3 checkpoints may set that our model does not run: refused before any weight is read.
NEW_ARCHITECTURES_BAD = {
    "gemma3 attention softcapping": ("gemma3_sliding_tied", dict(attn_logit_softcapping=50.0),
                                     "attn_logit_softcapping=50.0 is not supported (only null)"),
    "gemma3 final softcapping": ("gemma3_sliding_tied", dict(final_logit_softcapping=30.0),
                                 "final_logit_softcapping=30.0 is not supported (only null)"),
    "gemma3 bidirectional": ("gemma3_sliding_tied", dict(use_bidirectional_attention=True),
                             "use_bidirectional_attention=true is not supported"),
    "gemma3 scaled global rope": ("gemma3_sliding_tied", dict(rope_parameters={
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
        "rope_parameters of full_attention of type 'linear' is not supported"),
    "gemma3 v4 rope scaling": ("gemma3_sliding_tied", dict(rope_parameters=None, rope_scaling={"rope_type": "linear", "factor": 8.0}),
                               "rope_scaling of type 'linear' is not supported"),
    "gemma3 activation": ("gemma3_sliding_tied", dict(hidden_activation="relu"), 'hidden_activation="relu" is not supported'),
    "gemma3 with vision": ("gemma3_sliding_tied", dict(model_type="gemma3"), "model_type 'gemma3' (Gemma 3 with its vision"),
    "qwen3 sliding window": ("qwen3_mqa_tied", dict(use_sliding_window=True), "use_sliding_window=true is not supported"),
}


@pytest.mark.parametrize("problem", NEW_ARCHITECTURES_BAD)
def test_qwen3_and_gemma3_options_we_lack_are_one_line_exit_2_before_any_weight_is_read(tmp_path, capsys, problem):
    case, changes, message = NEW_ARCHITECTURES_BAD[problem]
    folder = save(hf_model(case), tmp_path / "hf")
    _edit_config(folder, **changes)
    (folder / "model.safetensors").write_bytes(b"\x10" * 64)  # read, it would fail with another message
    capsys.readouterr()  # saving's progress bars
    status, out, err = _run(capsys, "import-hf", folder, "--out", tmp_path / "ours")
    assert status == 2 and out == ""
    assert message in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


class _TouchesCanary:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def test_a_malicious_pickle_is_refused_in_one_line_without_torch_warnings(tmp_path, checkpoint):
    # A plain pickle (protocol 4, not torch.save's) whose unpickling would run a shell command: torch's weights-only
    # unpickler refuses it, but printed its own warnings first. In a subprocess: the test run captures warnings.
    folder = shutil.copytree(checkpoint, tmp_path / "hf")
    (folder / "model.safetensors").unlink()
    canary = tmp_path / "canary"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"model.norm.weight": _TouchesCanary(canary)}, protocol=4))
    result = subprocess.run([sys.executable, "-m", "scaling", "import-hf", "hf", "--out", "ours"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["scaling: error: hf/pytorch_model.bin is not a loadable PyTorch weights file "
                                          "(UnpicklingError)"]
    assert not canary.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_a_file_named_as_a_checkpoint_folder_is_called_a_file_not_missing(tmp_path, capsys):
    (tmp_path / "grid.toml").write_text('name = "g"\n[axes]\nsize = ["hf:/etc/passwd"]\n[data]\nfamilies = ["add"]\n'
                                        '[train]\nbudgets = [4]\n')
    said = "/etc/passwd is a regular file, not a checkpoint folder (give a local Hugging Face checkpoint folder or a .gguf"
    for argv in (["import-hf", "/etc/passwd", "--out", tmp_path / "ours"], ["run", tmp_path / "grid.toml", "--dry-run"]):
        status, out, err = _run(capsys, *argv)
        assert status == 2 and out == "" and said in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


def test_an_existing_out_is_never_touched(tmp_path, capsys, checkpoint):
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "notes.txt").write_text("mine")
    status, _, err = _run(capsys, "import-hf", checkpoint, "--out", tmp_path / "ours")
    assert status == 2 and "already exists and is not empty" in _one_line(err)
    assert [p.name for p in (tmp_path / "ours").iterdir()] == ["notes.txt"]
    status, _, err = _run(capsys, "export-hf", tmp_path / "ours", "--out", tmp_path / "exported")
    assert status == 2 and "is not a model folder" in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours"]


def test_import_and_export_commands_print_one_summary_line(tmp_path, capsys, checkpoint):
    status, out, _ = _run(capsys, "import-hf", checkpoint, "--out", tmp_path / "ours")
    assert status == 0 and out.strip() == f"imported llama, 0.09M params, 2 layers, vocab 211 -> {tmp_path / 'ours'}"
    status, out, _ = _run(capsys, "export-hf", tmp_path / "ours", "--out", tmp_path / "exported")
    assert status == 0 and out.strip() == f"exported llama, 0.09M params, 2 layers, vocab 211 -> {tmp_path / 'exported'}"
    assert (tmp_path / "exported" / "config.json").is_file()
