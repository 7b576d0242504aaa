"""GGUF files as checkpoints: tiny random llama/qwen2 files written as llama.cpp writes them, and the real
SmolLM2-135M-Instruct file the Makefile installs. Our model must give what transformers' own GGUF load gives."""

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
from gguf import GGMLQuantizationType  # noqa: E402
from gguf_files import TINY_VOCAB, gemma3_path, smollm2_path, tiny_gguf, tiny_model  # noqa: E402

from scaling.cli import main  # noqa: E402
from scaling.errors import UserError  # noqa: E402
from scaling.grid.plan import cell_plan, load_or_pretrain_base, measured_base  # noqa: E402
from scaling.grid.spec import expand, parse_spec  # noqa: E402
from scaling.hf import check_hf_checkpoint, export_hf, import_hf, load_model_folder, read_hf_checkpoint  # noqa: E402
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer  # noqa: E402
from scaling.hf.folder import param_arrays  # noqa: E402
from scaling.tasks.mixture import training_pool  # noqa: E402
from scaling.trainer.decode import generate_greedy_cached  # noqa: E402
from scaling.trainer.model import init_model, logits  # noqa: E402

CHAT_PROMPTS = ["What is 17 + 25? Think step by step.", "Reverse the list 3 1 4 1 5.",
                "Sort these numbers: 9 2 7 4 1 8 0 3 6 5, then say which is the largest."]


def our_logits(model, tokens_BxT: np.ndarray) -> np.ndarray:
    B, T = tokens_BxT.shape
    return np.asarray(logits(model.params, jnp.asarray(tokens_BxT), jnp.broadcast_to(jnp.arange(T), (B, T)),
                             jnp.ones((B, T), jnp.int32), graphdef=init_model(model.cfg, 0)[0]))


def their_logits(model, tokens_BxT: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(tokens_BxT, dtype=torch.long)).logits.numpy()


def transformers_gguf(path: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def greedy_pair(ours, theirs, prompt_ids: list[int], new: int, eos_id: int) -> tuple[list[int], list[int]]:
    """Both models' greedy continuations of one prompt, through the first eos (or `new` tokens)."""
    P = len(prompt_ids)
    buffer_1xT = np.zeros((1, P + new), np.int32)
    buffer_1xT[0, :P] = prompt_ids
    generated = np.asarray(generate_greedy_cached(ours.params, jnp.asarray(buffer_1xT), jnp.full((1,), P),
                                                  graphdef=init_model(ours.cfg, 0)[0], max_new=new, eos_id=eos_id))
    with torch.no_grad():
        expected = theirs.generate(torch.as_tensor([prompt_ids]), attention_mask=torch.ones(1, P, dtype=torch.long),
                                   do_sample=False, max_new_tokens=new, eos_token_id=eos_id, pad_token_id=eos_id).numpy()

    return through_eos(generated[0, P:], eos_id), through_eos(expected[0, P:], eos_id)


def through_eos(tokens, eos_id: int) -> list[int]:
    """Generated tokens through the first eos (all of them when there is none)."""
    tokens = [int(t) for t in tokens]
    return tokens[:tokens.index(eos_id) + 1] if eos_id in tokens else tokens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gguf")
    return {"llama": tiny_gguf(folder / "llama.gguf", "llama", GGMLQuantizationType.Q8_0, tied=False),
            "qwen2": tiny_gguf(folder / "qwen2.gguf", "qwen2", GGMLQuantizationType.Q4_1, tied=True),
            "qwen3": tiny_gguf(folder / "qwen3.gguf", "qwen3", GGMLQuantizationType.Q8_0, tied=False),
            "qwen3_tied": tiny_gguf(folder / "qwen3_tied.gguf", "qwen3", GGMLQuantizationType.Q5_0, tied=True),
            "gemma3": tiny_gguf(folder / "gemma3.gguf", "gemma3_text", GGMLQuantizationType.Q8_0, tied=True),
            "gemma3_untied": tiny_gguf(folder / "gemma3_untied.gguf", "gemma3_text", GGMLQuantizationType.Q4_1,
                                       tied=False)}


@pytest.mark.parametrize("architecture, model_type", [("llama", "llama"), ("qwen2", "qwen2"), ("qwen3", "qwen3"),
                                                      ("qwen3_tied", "qwen3"), ("gemma3", "gemma3_text"),
                                                      ("gemma3_untied", "gemma3_text")])
def test_a_quantized_gguf_reads_as_transformers_dequantizes_it(tiny, architecture, model_type):
    path = tiny[architecture]
    assert check_hf_checkpoint(path) == model_type
    ours, theirs = read_hf_checkpoint(path), transformers_gguf(path)
    assert ours.cfg.total_params == sum(p.numel() for p in theirs.parameters())
    tokens_BxT = np.random.default_rng(1).integers(0, ours.cfg.vocab_size, (2, 12))
    np.testing.assert_allclose(our_logits(ours, tokens_BxT), their_logits(theirs, tokens_BxT), atol=1e-5, rtol=0)
    prompt = [int(t) for t in tokens_BxT[0]]
    generated, expected = greedy_pair(ours, theirs, prompt, new=20, eos_id=-1)
    assert generated == expected and len(generated) == 20


def test_gemma3_norms_read_back_as_the_model_that_wrote_them_before_llama_cpp_added_one(tiny):
    """llama.cpp stores Gemma's norm scales as 1 + w (float32 here, so exactly): what we read must be w itself,
    every norm of a layer and the q/k norms included, each in its place."""
    written = {name: p.detach().numpy() for name, p in tiny_model("gemma3_text", tied=True).named_parameters()}
    params = dict(param_arrays(read_hf_checkpoint(tiny["gemma3"]).params))
    places = {"input_layernorm": "attention_norm", "post_attention_layernorm": "attention_post_norm",
              "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "mlp_post_norm",
              "self_attn.q_norm": "attention/query_norm", "self_attn.k_norm": "attention/key_norm"}
    for hf_name, ours in places.items():
        np.testing.assert_allclose(params[f"blocks/5/{ours}/scale"], written[f"model.layers.5.{hf_name}.weight"],
                                   atol=1e-6, rtol=0)
    np.testing.assert_allclose(params["final_norm/scale"], written["model.norm.weight"], atol=1e-6, rtol=0)


def test_only_the_gguf_file_is_read_never_files_beside_it(tiny, tmp_path):
    (tmp_path / "model.gguf").write_bytes(tiny["llama"].read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "auto_map": {"AutoConfig": "evil.Config"}}))
    (tmp_path / "evil.py").write_text("raise SystemExit('code beside a GGUF file ran')\n")
    assert check_hf_checkpoint(tmp_path / "model.gguf") == "llama"
    assert checkpoint_tokenizer(tmp_path / "model.gguf").vocab_size == TINY_VOCAB


def test_import_then_export_gives_transformers_the_same_model(tiny, tmp_path):
    path = tiny["llama"]
    folder = import_hf(path, tmp_path / "imported")
    assert {"model.safetensors", "scaling_model.json", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in folder.iterdir()}
    exported = export_hf(folder, tmp_path / "exported")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    tokens_BxT = np.random.default_rng(2).integers(0, TINY_VOCAB, (2, 10))
    np.testing.assert_allclose(their_logits(reloaded, tokens_BxT), their_logits(transformers_gguf(path), tokens_BxT),
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(our_logits(load_model_folder(folder), tokens_BxT),
                               their_logits(reloaded, tokens_BxT), atol=1e-5, rtol=0)
    # The tokenizer survives both trips: the exported folder tokenizes as the GGUF file does.
    example = training_pool(("add",), 1, 4, seed=0, cot="full")[0]
    assert checkpoint_tokenizer(exported).prompt_ids(example) == checkpoint_tokenizer(path).prompt_ids(example)


def test_the_gguf_tokenizer_renders_prompts_as_transformers_does():
    path = smollm2_path()
    ours = checkpoint_tokenizer(path)
    reference = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert ours.eos_id == reference.eos_token_id and ours.vocab_size == 49152
    for example in training_pool(("add", "reverse", "word"), 3, 6, seed=3, cot="full"):
        messages = [{"role": "user", "content": example.prompt}]
        assert ours.prompt_ids(example) == reference.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert ours.decode(ours.completion_ids(example)) == example.completion


def _unsupported_type(path: Path) -> Path:
    return tiny_gguf(path, extra_tensor=("blk.0.extra.weight", np.zeros((4, 32), np.int8), GGMLQuantizationType.I8))


BAD_FILES = {
    "tensor type": (_unsupported_type, "has type I8, which cannot be dequantized; supported types: F32, F16"),
    "architecture": (lambda path: tiny_gguf(path, gguf_architecture="mamba"), "GGUF architecture 'mamba' is not supported"),
    "not gguf": (lambda path: path.write_bytes(b"GGML" + bytes(60)) and path, "is not a readable GGUF file"),
    "missing": (lambda path: path, "does not exist"),
}


@pytest.mark.parametrize("problem", BAD_FILES)
def test_a_gguf_we_cannot_use_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, problem):
    make, message = BAD_FILES[problem]
    path = tmp_path / "model.gguf"
    make(path)
    assert main(["import-hf", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match=message.split(";")[0][:30]):
        parse_spec(SPEC.replace("hf:base.gguf", "hf:model.gguf"), base_dir=tmp_path)


SPEC = """
name = "gguf"
[axes]
size = ["hf:base.gguf"]
[data]
families = ["add"]
ood_families = ["sum3"]
examples = 32
[train]
budgets = [4, 8]
batch_size = 4
warmup_steps = 2
[eval]
splits = ["train", "id"]
n = 4
memorization_n = 4
"""


@pytest.mark.slow
def test_a_gguf_file_is_a_grid_base(tiny, tmp_path, capsys):
    (tmp_path / "base.gguf").symlink_to(tiny["qwen2"])
    (tmp_path / "grid.toml").write_text(SPEC)
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "grid.toml"), "--out", str(run), "--dry-run"]) == 0
    assert "hf:base.gguf" in capsys.readouterr().out and not run.exists()
    assert main(["run", str(tmp_path / "grid.toml"), "--out", str(run)]) == 0
    assert main(["collect", str(run)]) == 0
    results = xr.open_dataset(run / "results.nc")
    assert list(results["size"].values) == ["hf:base.gguf"]
    cell = results.sel(size="hf:base.gguf", pretrain_tokens=0).squeeze()
    assert (cell["status"].values == "done") and int(cell["params"]) == read_hf_checkpoint(tiny["qwen2"]).cfg.non_embedding_params
    loss = cell["loss"].sel(split="train").values
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    # The checkpoint was measured once and its measures kept for the grid's other cells.
    (kept,) = (run / "scratch" / "bases").glob("checkpoint-*/measures.json")
    measures = json.loads(kept.read_text())
    assert measures["base_probe_acc"] == float(cell["base_probe_acc"]) and measures["base_loss"] == float(cell["base_loss"])


def test_a_checkpoints_measures_are_read_back_until_its_file_changes(tiny, tmp_path):
    base = tmp_path / "base.gguf"
    base.write_bytes(tiny["qwen2"].read_bytes())
    spec = parse_spec(SPEC, base_dir=tmp_path)
    cell = expand(spec)[0]
    plan = cell_plan(spec, cell, load_or_pretrain_base(spec, cell, tmp_path / "bases"))
    measured = measured_base(spec, cell, plan, tmp_path / "bases")
    (kept,) = (tmp_path / "bases").glob("checkpoint-*/measures.json")
    assert json.loads(kept.read_text()) == measured
    kept.write_text(json.dumps({"base_loss": 9.0, "base_probe_acc": 0.5}))  # proves the second call reads it
    assert measured_base(spec, cell, plan, tmp_path / "bases") == {"base_loss": 9.0, "base_probe_acc": 0.5}
    os.utime(base, ns=(base.stat().st_atime_ns, base.stat().st_mtime_ns + 10**9))  # the file changed: measure again
    assert measured_base(spec, cell, plan, tmp_path / "bases") == measured
    assert len(list((tmp_path / "bases").glob("checkpoint-*"))) == 2


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_path()
    reference = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    prompts = [reference.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=True, return_dict=False) for text in CHAT_PROMPTS]
    return read_hf_checkpoint(path), transformers_gguf(path), checkpoint_tokenizer(path), reference, prompts


def right_padded(prompts: list[list[int]], width: int, pad: int) -> np.ndarray:
    rows_BxT = np.full((len(prompts), width), pad, np.int32)
    for row, prompt in enumerate(prompts):
        rows_BxT[row, :len(prompt)] = prompt
    return rows_BxT


@pytest.mark.real_model
def test_smollm2_logits_match_transformers_on_chat_prompts(smollm2):
    ours, theirs, tokenizer, reference, prompts = smollm2
    assert ours.architecture == "llama" and ours.cfg.n_layers == 30 and ours.cfg.d_model == 576
    # Right padding leaves every prompt position's logits as they are (causal): one batch, one compilation.
    tokens_BxT = right_padded(prompts, max(map(len, prompts)), tokenizer.eos_id)
    ours_BxTxV, theirs_BxTxV = our_logits(ours, tokens_BxT), their_logits(theirs, tokens_BxT)
    for row, prompt in enumerate(prompts):
        # Float32 through 30 layers: two correct implementations differ by ~1e-4 here (transformers' own float32
        # and float64 logits differ by 0.9e-4 on these prompts), so the bound is 2.5e-4, at |logit| up to ~40.
        np.testing.assert_allclose(ours_BxTxV[row, :len(prompt)], theirs_BxTxV[row, :len(prompt)], atol=2.5e-4, rtol=0)


@pytest.mark.real_model
def test_smollm2_greedy_answers_match_transformers_token_for_token(smollm2):
    ours, theirs, tokenizer, reference, prompts = smollm2
    new, eos = 32, tokenizer.eos_id
    lengths = [len(prompt) for prompt in prompts]
    buffer_BxT = right_padded(prompts, max(lengths) + new, tokenizer.pad_id)
    generated_BxT = np.asarray(generate_greedy_cached(ours.params, jnp.asarray(buffer_BxT), jnp.asarray(lengths),
                                                      graphdef=init_model(ours.cfg, 0)[0], max_new=new, eos_id=eos))
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            expected = theirs.generate(torch.as_tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                       do_sample=False, max_new_tokens=new, eos_token_id=eos, pad_token_id=eos).numpy()
        ours_answer = through_eos(generated_BxT[row, len(prompt):len(prompt) + new], eos)
        their_answer = through_eos(expected[0, len(prompt):], eos)
        assert ours_answer == their_answer, (reference.decode(ours_answer), reference.decode(their_answer))
        assert len(ours_answer) >= 8  # an answer, not an immediate end of turn


@pytest.mark.real_model
def test_smollm2_reads_chat_rows_of_a_dataset_through_its_own_template(tmp_path):
    """A user's chat rows (a system turn of their own, several turns) become exactly the prompt and answer ids
    transformers' apply_chat_template gives SmolLM2 for the same messages."""
    from scaling.tasks.dataset import DatasetSource

    path = smollm2_path()
    chats = [[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+3?"},
              {"role": "assistant", "content": "2+3=5\n#### 5"}],
             [{"role": "user", "content": "Add 1 and 1."}, {"role": "assistant", "content": "#### 2"},
              {"role": "user", "content": "Now reverse 1 2."}, {"role": "assistant", "content": "2 1\n#### 2 1"}]]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": chat, "family": "mixed"}) + "\n" for chat in chats))
    (id_split,) = DatasetSource(str(tmp_path / "chat.jsonl"), ("mixed",)).evaluation_set(("id",), 2, 0, "full").values()
    tokenizer = checkpoint_tokenizer(path)
    reference = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for example in id_split:
        (chat,) = [c for c in chats if c[-1]["content"] == example.completion]
        expected_prompt = reference.apply_chat_template(chat[:-1], add_generation_prompt=True, tokenize=True, return_dict=False)
        whole = reference.apply_chat_template(chat, tokenize=True, return_dict=False)
        assert tokenizer.prompt_ids(example) == list(expected_prompt)
        answer = tokenizer.completion_ids(example)
        assert list(whole[:len(expected_prompt) + len(answer)]) == [*expected_prompt, *answer] and answer[-1] == tokenizer.eos_id


@pytest.fixture(scope="module")
def gemma3():
    """Gemma 3 270M (base), where `make install-gemma` installed it: ours, transformers', and its tokenizer."""
    path = gemma3_path()
    if path is None:
        pytest.skip("Gemma 3 270M is not installed (make install-gemma; Gemma Terms of Use)")
    reference = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return read_hf_checkpoint(path), transformers_gguf(path), reference


@pytest.mark.real_model
def test_gemma3_270m_logits_match_transformers_past_its_sliding_window(gemma3):
    ours, theirs, reference = gemma3
    cfg = ours.cfg
    assert ours.architecture == "gemma3_text" and cfg.total_params == 268_098_176
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (18, 640, 4, 1, 256)
    assert cfg.layer_types == (("sliding_attention",) * 5 + ("full_attention",)) * 3 and cfg.sliding_window == 512
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.attention_scale_width) == (1e6, 1e4, 256)
    # 640 tokens of text: the last 128 positions' sliding layers no longer see the first tokens.
    ids = reference("The history of the Roman Empire begins with a city on seven hills. " * 60)["input_ids"][:640]
    tokens_1xT = np.asarray([ids])
    assert tokens_1xT.shape[1] == 640
    # Float32 through 18 layers of a repetitive text (sharp attention): transformers' own float32 and float64
    # logits differ by 3.3e-3 here, ours and its float32 by 2.3e-3, at |logit| up to ~33.
    np.testing.assert_allclose(our_logits(ours, tokens_1xT), their_logits(theirs, tokens_1xT), atol=5e-3, rtol=0)


@pytest.mark.real_model
def test_gemma3_270m_greedy_continuations_match_transformers_token_for_token(gemma3):
    ours, theirs, reference = gemma3
    for text in ("The capital of France is", "def fibonacci(n):", "Question: What is 17 + 25?\nAnswer:"):
        prompt = reference(text)["input_ids"]
        generated, expected = greedy_pair(ours, theirs, prompt, new=24, eos_id=reference.eos_token_id)
        assert generated == expected, (reference.decode(generated), reference.decode(expected))


@pytest.mark.real_model
def test_gemma3_270m_imports_and_exports_as_the_checkpoint_transformers_reads_from_the_file(gemma3, tmp_path):
    ours, theirs, _ = gemma3
    folder = import_hf(gemma3_path(), tmp_path / "imported")
    exported = export_hf(folder, tmp_path / "exported")
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["sliding_window"] == 512
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    tokens_BxT = np.random.default_rng(3).integers(0, ours.cfg.vocab_size, (1, 40))
    np.testing.assert_array_equal(their_logits(reloaded, tokens_BxT), their_logits(theirs, tokens_BxT))
