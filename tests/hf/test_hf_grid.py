"""A Hugging Face checkpoint as a grid base, end to end: validate, run, collect, keep the fine-tuned model,
export it, and load the export with transformers."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import xarray as xr  # noqa: E402
from checkpoint_folders import chatml_folder, plain_folder  # noqa: E402

from scaling.cli import main  # noqa: E402
from scaling.errors import UserError  # noqa: E402
from scaling.grid.spec import expand, parse_spec  # noqa: E402
from scaling.hf import load_model_folder, read_hf_checkpoint  # noqa: E402
from scaling.trainer.model import init_model, logits  # noqa: E402
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer  # noqa: E402

SPEC = """
name = "hf"
[axes]
size = ["hf:base", "tiny"]
[data]
families = ["add"]
ood_families = ["reverse"]
examples = 64
[train]
budgets = [6, 12]
batch_size = 4
warmup_steps = 2
[eval]
splits = ["train", "id"]
n = 8
memorization_n = 8
[run]
save_models = true
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny random Qwen2 checkpoint with a ChatML tokenizer trained on task text: a stand-in for Qwen2.5."""
    folder = chatml_folder(tmp_path_factory.mktemp("checkpoint") / "base")
    vocab = checkpoint_tokenizer(folder).vocab_size
    config = transformers.Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def our_logits(model, tokens_BxT: np.ndarray) -> np.ndarray:
    B, T = tokens_BxT.shape
    return np.asarray(logits(model.params, jnp.asarray(tokens_BxT), jnp.broadcast_to(jnp.arange(T), (B, T)),
                             jnp.ones((B, T), jnp.int32), graphdef=init_model(model.cfg, 0)[0]))


def test_a_checkpoint_base_trains_collects_and_exports_as_a_checkpoint(base, capsys):
    root = base.parent
    (root / "grid.toml").write_text(SPEC)
    run = root / "run"
    assert main(["run", str(root / "grid.toml"), "--out", str(run), "--dry-run"]) == 0
    assert "hf:base" in capsys.readouterr().out and not run.exists()

    assert main(["run", str(root / "grid.toml"), "--out", str(run)]) == 0
    assert main(["collect", str(run)]) == 0
    results = xr.open_dataset(run / "results.nc")
    assert list(results["size"].values) == ["hf:base", "tiny"]
    imported = read_hf_checkpoint(base)
    assert int(results["params"].sel(size="hf:base")) == imported.cfg.non_embedding_params
    hf_cell = results.sel(size="hf:base", pretrain_tokens=0).squeeze()
    assert np.isfinite(hf_cell["loss"].values).all() and (hf_cell["status"].values == "done")
    # Twelve steps of SFT lower the checkpoint's loss on its training examples.
    train_loss = hf_cell["loss"].sel(split="train").values
    assert train_loss[-1] < train_loss[0]

    hf_id = next(c.cell_id for c in expand(parse_spec(SPEC, base_dir=root)) if c.size == "hf:base")
    models = run / "models"
    assert sorted(p.name for p in models.iterdir()) == sorted(c.cell_id for c in expand(parse_spec(SPEC, base_dir=root)))
    tuned = load_model_folder(models / hf_id)
    assert tuned.architecture == "qwen2" and (models / hf_id / "tokenizer.json").is_file()

    exported = root / "exported"
    assert main(["export-hf", str(models / hf_id), "--out", str(exported)]) == 0
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    tokens_BxT = np.random.default_rng(0).integers(0, tuned.cfg.vocab_size, (2, 16))
    with torch.no_grad():
        theirs = reloaded(torch.as_tensor(tokens_BxT)).logits.numpy()
    np.testing.assert_allclose(our_logits(tuned, tokens_BxT), theirs, atol=1e-4, rtol=0)
    assert np.abs(our_logits(imported, tokens_BxT) - theirs).max() > 1e-3  # the export is the fine-tuned model
    assert json.loads((exported / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"


def test_a_checkpoint_the_grid_cannot_use_is_refused_before_any_work(base, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((base / "config.json").read_text()) | {"model_type": "mamba", "architectures": ["MambaForCausalLM"]}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="mamba"):
        parse_spec(SPEC.replace("hf:base", "hf:broken"), base_dir=tmp_path)
    (tmp_path / "notok").mkdir()
    for file in base.iterdir():
        if file.name != "tokenizer.json":
            (tmp_path / "notok" / file.name).write_bytes(file.read_bytes())
    with pytest.raises(UserError, match="tokenizer"):
        parse_spec(SPEC.replace("hf:base", "hf:notok"), base_dir=tmp_path)


def test_a_pythia_like_base_without_a_chat_template_fine_tunes_in_a_grid(tmp_path, capsys):
    """GPT-NeoX (parallel residual, partial rotary, untied) with a plain bos/eos tokenizer, as Pythia ships."""
    base = plain_folder(tmp_path / "pythia")
    config = transformers.GPTNeoXConfig(vocab_size=checkpoint_tokenizer(base).vocab_size, hidden_size=32,
                                        intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        max_position_embeddings=512, rotary_pct=0.25, use_parallel_residual=True,
                                        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(base)
    spec = SPEC.replace('"hf:base", "tiny"', '"hf:pythia"').replace("save_models = true", "save_models = false")
    (tmp_path / "grid.toml").write_text(spec)
    assert main(["run", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "run")]) == 0
    assert main(["collect", str(tmp_path / "run")]) == 0
    results = xr.open_dataset(tmp_path / "run" / "results.nc").squeeze()
    assert str(results["size"].values) == "hf:pythia" and str(results["status"].values) == "done"
    assert int(results["params"]) == read_hf_checkpoint(base).cfg.non_embedding_params
    loss = results["loss"].sel(split="train").values
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert not (tmp_path / "run" / "models").exists()  # save_models is off


def test_a_checkpoint_base_fine_tunes_on_a_chat_dataset_through_its_own_chat_template(base, tmp_path):
    """Chat rows keep their own system turn under the checkpoint's template (not the template's default one), and
    text outside the preset alphabet is fine for a checkpoint's tokenizer."""
    from scaling.grid.plan import cell_plan
    from scaling.tasks.mixture import sample

    rows = [{"messages": [{"role": "system", "content": "Réponds brièvement."}, {"role": "user", "content": e.prompt},
                          {"role": "assistant", "content": e.completion}], "topic": family}
            for family in ("add", "reverse") for e in sample(family, "train", 30, seed=1)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec_text = (SPEC.replace('"hf:base", "tiny"', f'"hf:{base}"').replace("save_models = true", "save_models = false")
                 .replace('families = ["add"]\nood_families = ["reverse"]',
                          'source = "chat.jsonl"\ngroup_by = "topic"\ngroups = ["add"]\nood_groups = ["reverse"]')
                 .replace('splits = ["train", "id"]', 'splits = ["train", "id", "ood_family"]').replace("examples = 64", "examples = 20"))
    (tmp_path / "grid.toml").write_text(spec_text)
    spec = parse_spec(spec_text, base_dir=tmp_path)
    (cell,) = expand(spec)
    plan = cell_plan(spec, cell, init_params=None)
    example = plan.splits["id"][0]
    prompt = plan.tokenizer.tokenizer.decode(plan.tokenizer.prompt_ids(example), skip_special_tokens=False)
    assert prompt.startswith("<|im_start|>system\nRéponds brièvement.<|im_end|>") and "helpful assistant" not in prompt
    assert "<|im_start|>user\n" in prompt and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert main(["run", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "run")]) == 0
    assert main(["collect", str(tmp_path / "run")]) == 0
    results = xr.open_dataset(tmp_path / "run" / "results.nc").squeeze()
    assert str(results["status"].values) == "done" and list(results["split"].values) == ["train", "id", "ood_family"]
    loss = results["loss"].sel(split="train").values
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
