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
from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.model import init_model, logits
from scaling.trainer.train import train
from scaling.tasks import tokenizer
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer
from scaling.tasks.grader import grade, parse_completion, verify_example
from scaling.tasks.mixture import evaluation_split, training_pool


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

    by_prompt = {tuple(tokenizer.CHARACTERS.prompt_ids(e)): text for e, text in zip(examples, written)}

    def generate(params, tokens, lengths, graphdef, max_new, eos_id, stop_VxS=None, prompt_span=None, states_B=None):
        out = np.array(tokens)
        for row, budget in enumerate(max_new):
            if budget:  # a padding row has no budget
                ids = tokenizer.encode(by_prompt[tuple(out[row, :lengths[row]])]) + [eos_id]
                out[row, lengths[row]: lengths[row] + len(ids)] = ids[: out.shape[1] - lengths[row]]
        return out

    monkeypatch.setattr(evaluate, "generate_greedy_cached", generate)
    monkeypatch.setattr(evaluate, "_draft", lambda completion, miss, chosen: np.zeros(0, np.int32))  # all generated
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


def _answer_line_end(stop_VxS: np.ndarray, ids: list[int]) -> int | None:
    """How many of `ids` the answer-line automaton reads before it finishes a row (None: it never does)."""
    state = 0
    for count, token in enumerate(ids, start=1):
        state = int(stop_VxS[token, state])
        if state == stop_VxS.shape[1] - 1:
            return count
    return None


PIECES = ("#", "##", "####", "#### ", " ", "\n", "\n\n", "7", "42", "a = 3", "x", "#### 12", "\n#### 5\n")


@pytest.mark.parametrize("folder", [None, chatml_folder], ids=["characters", "bpe"])
def test_the_answer_line_automaton_stops_where_nothing_after_can_change_what_the_grader_reads(folder, tmp_path):
    tok = tokenizer.CHARACTERS if folder is None else checkpoint_tokenizer(folder(tmp_path))
    stop_VxS = evaluate.answer_line_automaton(tok)
    assert _answer_line_end(stop_VxS, tok.encode("3 + 4 = 7\n#### 7\nnow more")) == len(tok.encode("3 + 4 = 7\n#### 7\n"))
    rng = np.random.default_rng(0)
    stops = 0
    for _ in range(400):
        text = "".join(rng.choice(PIECES, rng.integers(1, 12)))
        ids = tok.encode(text)
        end = _answer_line_end(stop_VxS, ids)
        steps, answer = parse_completion(text)
        if end is None:
            assert answer is None or "\n" not in text.partition("####")[2].strip()
            continue
        stops += 1
        read = tok.decode(ids[:end])
        assert read.endswith("\n") and parse_completion(read) == (steps, answer) and answer
        assert parse_completion(tok.decode(ids[:end - 1]))[1] == answer  # the newline itself was the last thing needed
    assert 50 < stops < 400


def test_decode_budgets_are_each_families_longest_gold_completion_and_a_margin():
    splits = {"id": evaluation_split("id", ("add", "reverse"), (), 8, 0),
              "ood_length": evaluation_split("ood_length", ("add", "reverse"), (), 8, 0)}
    budgets = evaluate.decode_budgets(splits)
    for split, examples in splits.items():
        for family in ("add", "reverse"):
            gold = max(len(e.completion) + 1 for e in examples if e.family == family)  # characters and end of sequence
            assert budgets[split][family] == gold + max(8, -(-gold // 4))
    assert budgets["ood_length"]["add"] > budgets["id"]["add"]
    assert [evaluate.shape_bucket(n) for n in (1, 16, 17, 25, 33, 49, 65, 97, 129, 200)] == \
        [16, 16, 24, 32, 48, 64, 96, 128, 192, 256]


@pytest.fixture(scope="module")
def trained(request):
    """A tiny model trained briefly on add and reverse, each completion followed by a line the grader never reads
    (so that rows go on after their answer line), and the evaluation splits it is graded on."""
    pool = [dataclasses.replace(e, completion=e.completion + "\nok") for e in training_pool(("add", "reverse"), 2, 200, seed=0)]
    splits = {split: evaluation_split(split, ("add", "reverse"), (), 12, 0) for split in ("id", "ood_length", "ood_phrasing")}
    lengths = {split: sequence_length(examples) for split, examples in splits.items()}
    length = max(sequence_length(pool), *lengths.values())
    cfg = _small_model(length)
    (_, graphdef, params), = train(cfg, TrainConfig(budgets=(400,), batch_size=16, warmup_steps=10, lr=3e-3),
                                   token_arrays(pool, length))
    return graphdef, params, splits, lengths


def _small_model(length: int) -> ModelConfig:
    """A model that learns some of add and reverse in a few hundred steps on CPU."""
    return ModelConfig(vocab_size=tokenizer.VOCAB_SIZE, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                       max_len=length)


def _against_the_old_evaluation(graphdef, params, splits, lengths) -> dict[str, int]:
    """Check `evaluate_splits` against the old evaluation (each split alone, rows of its length, generation until end
    of sequence or a full row, by the reference decoder): the same metrics' keys, grades in the examples' order,
    the same loss, each row's generated tokens cut at its answer line or its budget, and the same grade for every
    row that fits its budget. Returns how many rows were compared, cut at their answer line and cut at budget."""
    metrics, grades = evaluate.evaluate_splits(graphdef, params, splits, lengths, batch_size=8)
    budgets = evaluate.decode_budgets(splits)
    stop_VxS = evaluate.answer_line_automaton(tokenizer.CHARACTERS)
    counts = {"compared": 0, "cut_at_answer": 0, "cut_at_budget": 0}
    for split, examples in splits.items():
        assert list(metrics[split]) == ["loss", "token_acc", "answer_acc", "process_acc", "chain_acc", "n"]
        assert [g["key"] for g in grades[split]] == [e.key for e in examples]
        old_metrics = evaluate_split(graphdef, params, examples, lengths[split], batch_size=8)
        assert metrics[split]["loss"] == pytest.approx(old_metrics["loss"], rel=1e-5)
        assert metrics[split]["token_acc"] == pytest.approx(old_metrics["token_acc"], rel=1e-5)
        tokens, prompt_lengths = prompt_arrays(examples, lengths[split])
        old = np.asarray(generate_greedy_full(params, tokens, prompt_lengths, graphdef=graphdef, max_new=lengths[split]))
        for example, row, n, new in zip(examples, old, prompt_lengths, grades[split]):
            written = list(row[n:])
            to_eos = written.index(tokenizer.EOS) + 1 if tokenizer.EOS in written else len(written)
            needed = min(to_eos, _answer_line_end(stop_VxS, written) or to_eos)
            budget = min(budgets[split][example.family], lengths[split] - n)
            assert new["generated_tokens"] == min(needed, budget)
            if needed > budget:
                counts["cut_at_budget"] += 1
                continue
            counts["compared"] += 1
            counts["cut_at_answer"] += needed < to_eos
            expected = grade(example.family, example.prompt, tokenizer.decode(row[n:]))
            assert (new["answer_correct"], new["process_score"], new["steps"]) == \
                (expected.answer_correct, expected.process_acc, expected.steps)
            assert new["chain_correct"] == expected.chain_correct
    assert counts["compared"] + counts["cut_at_budget"] == sum(map(len, splits.values()))
    return counts | {"process": np.mean([g["process_score"] for split in grades for g in grades[split]])}


def test_evaluating_all_splits_in_buckets_grades_as_decoding_each_split_to_its_end(trained):
    counts = _against_the_old_evaluation(*trained)
    assert counts["compared"] >= 0.8 * sum(map(len, trained[2].values()))
    assert counts["cut_at_answer"] > 0  # rows went on after their answer line, and the new decode did not
    assert counts["process"] > 0  # the model learned some steps: grades are not all zero


def test_rows_that_never_end_stop_at_their_budget(trained):
    graphdef, _, splits, lengths = trained
    _, params_at_init = init_model(_small_model(max(lengths.values())), seed=0)
    counts = _against_the_old_evaluation(graphdef, params_at_init, splits, lengths)
    # A random model rarely ends a row itself: rows whose split leaves room past their budget stop at the budget.
    assert counts["cut_at_budget"] > 0.25 * sum(map(len, splits.values()))


def _reads_everything(example, completion):
    """The families' verifier, as a grader the evaluation cannot tell reads only the first answer line: rows are
    decoded to end of sequence or budget."""
    return verify_example(example, completion)


def _first_misses(graphdef, params, examples, length) -> list[tuple[int, int] | None]:
    """Each example's first gold completion token whose full-forward argmax is another token, as (its index in
    the completion, that argmax); None where the argmax is the gold token all the way through end of sequence."""
    arrays = token_arrays(examples, length)
    argmax = np.asarray(logits(params, arrays.inputs, arrays.positions, arrays.segments, graphdef=graphdef)).argmax(-1)
    misses = []
    for row, example in enumerate(examples):
        first = int(np.argmax(arrays.loss_mask[row]))
        completion = tokenizer.encode(example.completion) + [tokenizer.EOS]
        chosen = argmax[row, first:first + len(completion)]
        index = next((k for k in range(len(completion)) if chosen[k] != completion[k]), None)
        misses.append(None if index is None else (index, int(chosen[index])))
    return misses


@pytest.mark.parametrize("grader", [verify_example, _reads_everything], ids=["answer_line", "to_the_end"])
def test_gold_drafts_grade_every_row_as_plain_greedy_decoding_and_skip_rows_they_finish(trained, grader, monkeypatch):
    """The trained model writes its completion, then "\nok". Gold completions as trained (no miss where it is
    right), as the splits have them (a miss at the end of sequence), with a line it never writes after "ok" (a
    miss that is end of sequence), and after a character it never starts with (a miss at 0)."""
    graphdef, params, splits, _ = trained
    base = splits["id"] + splits["ood_phrasing"]
    drafted = {"as_trained": [dataclasses.replace(e, completion=e.completion + "\nok") for e in base],
               "as_is": base,
               "longer": [dataclasses.replace(e, completion=e.completion + "\nok\nmore") for e in base],
               "shifted": [dataclasses.replace(e, completion="!" + e.completion) for e in base]}
    lengths = {split: sequence_length(examples) for split, examples in drafted.items()}
    budgets = evaluate.decode_budgets(drafted)
    stop_VxS = evaluate.answer_line_automaton(tokenizer.CHARACTERS) if grader is verify_example else None
    decoded = []
    spy = lambda *args, **kwargs: decoded.append(int((np.asarray(kwargs["max_new"]) > 0).sum())) or \
        generate_greedy_cached(*args, **kwargs)  # noqa: E731
    monkeypatch.setattr(evaluate, "generate_greedy_cached", spy)
    _, grades = evaluate.evaluate_splits(graphdef, params, drafted, lengths, batch_size=8, grader=grader)
    kinds = {"none": 0, "at_0": 0, "mid": 0, "eos": 0}
    must_decode = 0
    for split, examples in drafted.items():
        tokens, prompt_lengths = prompt_arrays(examples, lengths[split])
        max_new = np.array([min(budgets[split][e.family], lengths[split] - n)
                            for e, n in zip(examples, prompt_lengths)])
        plain = np.asarray(generate_greedy_full(params, tokens, prompt_lengths, graphdef=graphdef, max_new=max_new,
                                                stop_VxS=None if stop_VxS is None else jnp.asarray(stop_VxS)))
        misses = _first_misses(graphdef, params, examples, lengths[split])
        for example, row, n, budget, miss, new in zip(examples, plain, prompt_lengths, max_new, misses, grades[split]):
            written = list(row[n:n + budget])
            at_eos = written.index(tokenizer.EOS) + 1 if tokenizer.EOS in written else len(written)
            at_answer = None if stop_VxS is None else _answer_line_end(stop_VxS, written)
            generated = min(at_eos, at_answer or at_eos)
            expected = grader(example, tokenizer.decode(written[:generated]))
            assert (new["generated_tokens"], new["answer_correct"], new["process_score"], new["steps"]) == \
                (generated, expected.answer_correct, expected.process_acc, expected.steps)
            assert new["chain_correct"] == expected.chain_correct
            if miss is None:
                kinds["none"] += 1
                continue
            index, chosen = miss
            kinds["eos" if chosen == tokenizer.EOS else "at_0" if index == 0 else "mid"] += 1
            accepted = written[:index + 1]
            ends_answer = stop_VxS is not None and _answer_line_end(stop_VxS, accepted) is not None
            must_decode += chosen != tokenizer.EOS and not ends_answer and index + 1 < budget
    assert min(kinds.values()) > 0, kinds
    assert sum(decoded) == must_decode < sum(map(len, drafted.values())) - kinds["none"]
