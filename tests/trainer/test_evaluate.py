"""Evaluation of a split: greedy generation (cached and reference), teacher-forced metrics, grading."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from checkpoint_folders import chatml_folder
from greedy_reference import generate_greedy_full

from scaling.trainer import evaluate
from scaling.trainer.batches import prompt_arrays, sequence_length, token_arrays
from scaling.trainer.decode import generate_greedy_cached
from scaling.trainer.evaluate import evaluate_split
from scaling.trainer.model import init_model, logits
from scaling.tasks import tokenizer
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.grader import grade
from scaling.tasks.mixture import training_pool


@pytest.fixture(scope="module")
def examples():
    return training_pool(("add", "reverse"), 2, 5, seed=0)


def test_greedy_generation_matches_a_token_by_token_argmax(tiny_model_cfg, examples):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    length = 48
    tokens, lengths = prompt_arrays(examples, length)
    generated = np.asarray(generate_greedy_full(params, tokens, lengths, graphdef=graphdef, max_new=6))
    positions, segments = jnp.arange(length)[None], jnp.ones((1, length), jnp.int32)
    for row in range(len(examples)):
        sequence = list(tokens[row, : lengths[row]])
        for _ in range(6):
            padded = jnp.array([sequence + [tokenizer.PAD] * (length - len(sequence))])  # one shape: one compile
            step_logits = logits(params, padded, positions, segments, graphdef=graphdef)
            sequence.append(int(step_logits[0, len(sequence) - 1].argmax()))
            if sequence[-1] == tokenizer.EOS:
                break
        assert list(generated[row, : len(sequence)]) == sequence


def test_split_metrics_agree_with_grading_the_generations(tiny_model_cfg, examples):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    length = sequence_length(examples)
    metrics = evaluate_split(graphdef, params, examples, length, batch_size=4)  # 5 examples: a padded batch
    tokens, lengths = prompt_arrays(examples, length)
    generated = np.asarray(generate_greedy_full(params, tokens, lengths, graphdef=graphdef, max_new=length))
    grades = [grade(e.family, e.prompt, tokenizer.decode(row[n:])) for e, row, n in zip(examples, generated, lengths)]
    assert metrics["n"] == 5
    assert metrics["answer_acc"] == np.mean([g.answer_correct for g in grades])
    assert metrics["process_acc"] == pytest.approx(np.mean([g.process_acc for g in grades]))
    # An untrained model is near uniform over the vocabulary.
    assert abs(metrics["loss"] - np.log(tokenizer.VOCAB_SIZE)) < 1.0
    # Token accuracy, counted here from the model's logits: argmax equals the next token, on completion tokens.
    arrays = token_arrays(examples, length)
    all_logits = np.asarray(logits(params, arrays.inputs, arrays.positions, arrays.segments, graphdef=graphdef))
    hits = (all_logits.argmax(-1) == arrays.targets) * arrays.loss_mask
    assert metrics["token_acc"] == pytest.approx(hits.sum() / arrays.loss_mask.sum())


def test_split_metrics_of_known_generations(tiny_model_cfg, examples, monkeypatch):
    """Generations written by hand: three gold, one with every step right but a wrong answer, one garbage."""
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    length = sequence_length(examples)
    gold = [e.completion for e in examples]
    wrong_answer = gold[3].rsplit("#### ", 1)[0] + "#### 999999"
    written = [*gold[:3], wrong_answer, "no idea"]

    def generate(params, tokens, lengths, graphdef, max_new, eos_id, stop_VxS=None):
        out = np.array(tokens)
        for row, text in enumerate(written[: len(out)]):
            ids = tokenizer.encode(text) + [eos_id]
            out[row, lengths[row]: lengths[row] + len(ids)] = ids[: out.shape[1] - lengths[row]]
        return out

    monkeypatch.setattr(evaluate, "generate_greedy_cached", generate)
    metrics = evaluate_split(graphdef, params, examples, length, batch_size=8)
    assert metrics["answer_acc"] == pytest.approx(3 / 5)
    assert metrics["process_acc"] == pytest.approx(4 / 5)  # the wrong answer's steps are all verified


def test_generation_stops_at_whatever_eos_id_it_is_given(tiny_model_cfg, examples):
    graphdef, params = init_model(tiny_model_cfg, seed=0)
    length = 48
    tokens, lengths = prompt_arrays(examples, length)
    free = np.asarray(generate_greedy_full(params, tokens, lengths, graphdef=graphdef, max_new=4))
    first = int(free[0, lengths[0]])  # greedy is deterministic: row 0's first token, made its end of sequence
    for generate in (generate_greedy_full, generate_greedy_cached):
        stopped = np.asarray(generate(params, tokens, lengths, graphdef=graphdef, max_new=4, eos_id=first))
        assert stopped[0, lengths[0]] == first and (stopped[0, lengths[0] + 1 :] == tokenizer.PAD).all()  # stopped at once
        for row in range(len(examples)):
            stop = lengths[row] + (list(free[row, lengths[row] : lengths[row] + 4]) + [first]).index(first) + 1
            np.testing.assert_array_equal(stopped[row, :stop], free[row, :stop])
            assert (stopped[row, stop:] == tokenizer.PAD).all()


def test_a_checkpoint_tokenizer_evaluates_with_its_own_ids_and_eos(tiny_model_cfg, examples, tmp_path, monkeypatch):
    tok = checkpoint_tokenizer(chatml_folder(tmp_path))
    length = sequence_length(examples, tok)
    graphdef, params = init_model(dataclasses.replace(tiny_model_cfg, vocab_size=tok.vocab_size, max_len=length), seed=0)
    eos_ids = []
    spy = lambda *args, **kwargs: eos_ids.append(kwargs["eos_id"]) or generate_greedy_cached(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(evaluate, "generate_greedy_cached", spy)
    metrics = evaluate_split(graphdef, params, examples, length, batch_size=4, tokenizer=tok)
    assert eos_ids == [tok.eos_id] * 2  # 5 examples: two batches
    tokens, lengths = prompt_arrays(examples, length, tok)
    generated = np.asarray(generate_greedy_full(params, tokens, lengths, graphdef=graphdef, max_new=length, eos_id=tok.eos_id))
    grades = [grade(e.family, e.prompt, tok.decode(row[n:])) for e, row, n in zip(examples, generated, lengths)]
    assert metrics["answer_acc"] == np.mean([g.answer_correct for g in grades])
    assert metrics["process_acc"] == pytest.approx(np.mean([g.process_acc for g in grades]))
    assert abs(metrics["loss"] - np.log(tok.vocab_size)) < 1.0
