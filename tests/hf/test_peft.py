"""LoRA adapters out to PEFT: a tiny random transformers model as the base, adapters trained on it by our trainer,
exported, and loaded by `peft.PeftModel.from_pretrained` on the base: the same logits. Merged: the same again."""

import json

import numpy as np
import pytest
import torch
import transformers

from hf_helpers import hf_logits, hf_model, save, tokens
from scaling.cli import main
from scaling.errors import UserError
from scaling.hf import read_hf_checkpoint
from scaling.hf.adapter import PEFT_CONFIG, PEFT_WEIGHTS, peft_modules, save_adapter_folder
from scaling.tasks.mixture import training_pool
from scaling.trainer.batches import sequence_length, token_arrays
from scaling.trainer.config import LoraConfig, TrainConfig
from scaling.trainer.lora import merged_params
from scaling.trainer.model import abstract_model, logits
from scaling.trainer.train import train

peft = pytest.importorskip("peft")

ADAPTER = LoraConfig(rank=4, alpha=8, targets=("query", "key", "value", "out", "gate", "up", "down"))


def _ours(graphdef, params, tokens_BxT):
    B, T = tokens_BxT.shape
    positions = np.tile(np.arange(T), (B, 1))
    return np.asarray(logits(params, tokens_BxT, positions, np.ones((B, T), np.int32), graphdef=graphdef))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A random llama-family base saved as a transformers checkpoint, and adapters our trainer trained on it."""
    base_dir = save(hf_model("llama_gqa_untied"), tmp_path_factory.mktemp("base") / "hf")
    base = read_hf_checkpoint(base_dir)
    pool = training_pool(("add",), 1, 32, seed=0)
    data = token_arrays(pool, sequence_length(pool))
    cfg = TrainConfig(budgets=(8,), batch_size=8, lr=3e-2, warmup_steps=1, adapter=ADAPTER)
    (_, graphdef, params), = train(base.cfg, cfg, data, init_params=base.params)
    adapter_dir = save_adapter_folder(tmp_path_factory.mktemp("adapter") / "lora", base.cfg, ADAPTER, params,
                                      base.architecture, base.hf_config, base_dir)
    return base_dir, base, graphdef, params, adapter_dir


def test_peft_loads_our_adapter_on_the_base_and_gives_our_logits(trained):
    base_dir, base, graphdef, params, adapter_dir = trained
    config = json.loads((adapter_dir / PEFT_CONFIG).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj"])
    with open(adapter_dir / PEFT_WEIGHTS, "rb") as f:
        assert b"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight" in f.read(4096)
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    model.eval()
    batch = tokens((2, 20))
    want = _ours(graphdef, params, batch)
    plain = hf_logits(transformers.AutoModelForCausalLM.from_pretrained(base_dir).eval(), batch)
    assert np.abs(want - plain).max() > 1e-3  # the adapters changed the model: the comparison is not vacuous
    with torch.no_grad():
        got = model(torch.as_tensor(batch)).logits.float().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_merged_checkpoint_gives_the_adapted_logits(trained, tmp_path, capsys):
    base_dir, base, graphdef, params, adapter_dir = trained
    batch = tokens((2, 20), seed=1)
    want = _ours(graphdef, params, batch)
    merged = merged_params(params, ADAPTER)  # a plain model's params: no adapter left
    # W + s·A·B rounds differently from x·W + s·(x·A)·B: equal to float32 rounding of the product, not bit for bit
    np.testing.assert_allclose(_ours(abstract_model(base.cfg)[0], merged, batch), want, atol=1e-5, rtol=1e-4)
    assert main(["export-hf", str(adapter_dir), "--out", str(tmp_path / "merged"), "--merge"]) == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    np.testing.assert_allclose(hf_logits(hf, batch), want, atol=1e-5, rtol=1e-4)
    assert main(["export-hf", str(adapter_dir), "--out", str(tmp_path / "peft")]) == 0
    assert sorted(p.name for p in (tmp_path / "peft").iterdir()) == sorted([PEFT_CONFIG, PEFT_WEIGHTS])


@pytest.mark.parametrize("case, target, fused", [("neox_quarter_rotary_parallel", "query", "query_key_value"),
                                                  ("gpt2_tied_learned_positions", "value", "c_attn")])
def test_a_target_the_checkpoint_fuses_is_refused_in_one_line(tmp_path, case, target, fused):
    base = read_hf_checkpoint(save(hf_model(case), tmp_path / "hf"))
    with pytest.raises(UserError, match=f"fuses it with other projections in .*{fused}") as error:
        peft_modules(base.architecture, base.cfg, (target,))
    assert "\n" not in str(error.value)


def test_merge_of_a_plain_model_folder_is_refused(tmp_path, capsys):
    base_dir = save(hf_model("llama_gqa_untied"), tmp_path / "hf")
    assert main(["import-hf", str(base_dir), "--out", str(tmp_path / "model")]) == 0
    assert main(["export-hf", str(tmp_path / "model"), "--out", str(tmp_path / "x"), "--merge"]) == 2
    assert "--merge" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["qwen3_gqa_qk_norm_untied", "gemma3_sliding_tied"])
def test_peft_loads_our_adapter_on_qwen3_and_gemma3_bases(name, tmp_path):
    """The architectures with q/k norms and sandwich norms name their projections as Llama does: PEFT finds them."""
    base_dir = save(hf_model(name), tmp_path / "hf")
    base = read_hf_checkpoint(base_dir)
    pool = training_pool(("add",), 1, 32, seed=0)
    data = token_arrays(pool, sequence_length(pool))
    cfg = TrainConfig(budgets=(4,), batch_size=8, lr=3e-2, warmup_steps=1, adapter=ADAPTER)
    (_, graphdef, params), = train(base.cfg, cfg, data, init_params=base.params)
    adapter_dir = save_adapter_folder(tmp_path / "lora", base.cfg, ADAPTER, params, base.architecture,
                                      base.hf_config, base_dir)
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    batch = tokens((2, 24))
    want = _ours(graphdef, params, batch)
    assert np.abs(want - hf_logits(transformers.AutoModelForCausalLM.from_pretrained(base_dir).eval(), batch)).max() > 1e-3
    with torch.no_grad():
        got = model.eval()(torch.as_tensor(batch)).logits.float().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
