"""Importing real (tiny, random) transformers checkpoints: our model must give HF's logits and greedy tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from hf_helpers import CASES, hf_logits, hf_model, save, tokens

from scaling.trainer.decode import generate_greedy_cached
from scaling.hf import check_hf_checkpoint, import_hf, load_model_folder, read_hf_checkpoint
from scaling.hf.folder import param_arrays
from scaling.trainer.model import init_model, logits

PROMPT, NEW = 8, 20


def our_logits(model, tokens_BxT):
    B, T = tokens_BxT.shape
    graphdef = init_model(model.cfg, 0)[0]
    return np.asarray(logits(model.params, jnp.asarray(tokens_BxT), jnp.broadcast_to(jnp.arange(T), (B, T)),
                             jnp.ones((B, T), jnp.int32), graphdef=graphdef))


def flat(model) -> dict[str, np.ndarray]:
    return dict(param_arrays(model.params))


@pytest.mark.parametrize("case", CASES)
def test_logits_and_greedy_generations_match_transformers(tmp_path, case):
    hf = hf_model(case)
    folder = save(hf, tmp_path / "hf")
    assert check_hf_checkpoint(folder) == CASES[case][0].model_type
    model = read_hf_checkpoint(folder)
    assert model.hf_config["model_type"] == model.architecture
    assert model.cfg.total_params == sum(p.numel() for p in hf.parameters())  # tied embeddings counted once

    prompt_BxT = tokens((2, 12), seed=1)
    np.testing.assert_allclose(our_logits(model, prompt_BxT), hf_logits(hf, prompt_BxT), atol=1e-4, rtol=0)

    # No end of sequence on either side (eos_id -1 never matches): both generate exactly NEW tokens.
    prompt_BxP = tokens((2, PROMPT), seed=2)
    with torch.no_grad():
        expected = hf.generate(torch.as_tensor(prompt_BxP), attention_mask=torch.ones(2, PROMPT, dtype=torch.long),
                               do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW, pad_token_id=0).numpy()
    buffer_BxT = np.zeros((2, PROMPT + NEW), np.int32)
    buffer_BxT[:, :PROMPT] = prompt_BxP
    generated = generate_greedy_cached(model.params, jnp.asarray(buffer_BxT), jnp.full((2,), PROMPT),
                                       graphdef=init_model(model.cfg, 0)[0], max_new=NEW, eos_id=-1)
    np.testing.assert_array_equal(np.asarray(generated), expected)


@pytest.mark.parametrize("case", [case for case in CASES if case.startswith(("qwen3", "gemma3"))])
def test_qwen3_and_gemma3_logits_equal_transformers_to_1e_5_past_the_sliding_window(tmp_path, case):
    hf = hf_model(case)
    model = read_hf_checkpoint(save(hf, tmp_path / "hf"))
    window = model.cfg.sliding_window
    prompt_BxT = tokens((2, 40), seed=4)
    assert window < 40 and (window > 0) == case.startswith("gemma3")  # Gemma's sliding layers cut keys off here
    np.testing.assert_allclose(our_logits(model, prompt_BxT), hf_logits(hf, prompt_BxT), atol=1e-5, rtol=0)


def test_the_model_folder_holds_exactly_what_read_returns(tmp_path):
    folder = save(hf_model("neox_quarter_rotary_parallel"), tmp_path / "hf")
    out = import_hf(folder, tmp_path / "ours")
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "scaling_model.json", "tokenizer.json"}
    assert (out / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    with safetensors.safe_open(out / "model.safetensors", "numpy") as written:  # the reference reader accepts our writer
        assert "blocks/0/attention/query/kernel" in written.keys()
    read, loaded = read_hf_checkpoint(folder), load_model_folder(out)
    assert loaded.cfg == read.cfg and loaded.architecture == read.architecture and loaded.hf_config == read.hf_config
    for (name, a), (other, b) in zip(flat(read).items(), flat(loaded).items(), strict=True):
        assert name == other
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("layout", ["pytorch_bin", "sharded_safetensors", "gpt2_names_without_prefix"])
def test_other_checkpoint_layouts_read_the_same(tmp_path, layout):
    case = "gpt2_tied_learned_positions" if layout == "gpt2_names_without_prefix" else "llama_gqa_untied"
    hf = hf_model(case)
    reference = flat(read_hf_checkpoint(save(hf, tmp_path / "reference")))
    folder = tmp_path / layout
    if layout == "pytorch_bin":
        folder.mkdir()
        hf.config.save_pretrained(folder)
        torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    elif layout == "sharded_safetensors":
        save(hf, folder, max_shard_size="40KB")
        assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("*.safetensors"))) > 2
    else:  # openai-community/gpt2 stores h.0..., wte, wpe, ln_f: no "transformer." prefix
        folder.mkdir()
        hf.config.save_pretrained(folder)
        state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
        safetensors.torch.save_file(state, folder / "model.safetensors")
    for name, array in flat(read_hf_checkpoint(folder)).items():
        np.testing.assert_array_equal(array, reference[name])


def test_bfloat16_weights_convert_exactly_to_float32(tmp_path):
    hf = hf_model("qwen2_gqa_bias_tied").to(torch.bfloat16)
    model = read_hf_checkpoint(save(hf, tmp_path / "hf"))
    embedding = hf.get_input_embeddings().weight.detach().float().numpy()
    np.testing.assert_array_equal(flat(model)["embed/embedding"], embedding)
    query = hf.model.layers[1].self_attn.q_proj
    np.testing.assert_array_equal(flat(model)["blocks/1/attention/query/kernel"], query.weight.detach().float().numpy().T)
    np.testing.assert_array_equal(flat(model)["blocks/1/attention/query/bias"], query.bias.detach().float().numpy())


@pytest.mark.parametrize("case", ["llama_gqa_untied", "neox_quarter_rotary_parallel", "gpt2_tied_learned_positions"])
def test_params_have_init_models_tree(tmp_path, case):
    model = read_hf_checkpoint(save(hf_model(case), tmp_path / "hf"))
    initialized = init_model(model.cfg, seed=0)[1]
    assert jax.tree.structure(model.params) == jax.tree.structure(initialized)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(model.params)] == [(x.shape, x.dtype) for x in jax.tree.leaves(initialized)]
