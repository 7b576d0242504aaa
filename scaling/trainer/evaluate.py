"""Evaluation of a model on its splits: teacher-forced loss and token accuracy, and greedy generation
graded by the task's own verifier (answer exact match, fraction of verified CoT steps).

Generation costs what the grades need. Each row decodes at most its (split, family)'s budget: the longest
gold completion of that family in that split, in the model's tokens, plus a margin (`decode_budget`). A row
also stops once it has written its answer line where the grader reads nothing after it
(`answer_line_automaton`). And the rows of every split are decoded together, ordered by the length they
need, in buffers whose length is one of a few shape buckets (`shape_bucket`), so that one compiled
program serves every split, budget and cell of a bucket.

Decoding starts from a verified draft: the gold completion. The teacher-forced pass (run for loss and token
accuracy anyway) gives the argmax after every prefix of prompt and gold completion, and greedy decoding writes
the gold tokens up to the first completion position whose argmax is not the gold token, and that argmax
there. So a row is decoded only from prompt, that accepted prefix and the argmax on, with what is left of its
budget, and not at all where the accepted tokens already end it (the whole gold completion through its end
of sequence, an argmax that is end of sequence, its answer line ended, or its budget spent). A model that gets
most rows right decodes few. It holds for every tokenizer: the teacher-forced row is `sequence_ids`, the
prompt's ids then the completion's, and generation starts from the same prompt ids, so the accepted prefix
is token for token what greedy decoding would have appended. The argmax comes from the full-sequence forward
(a fused attention kernel, perhaps) rather than the key/value cache, so the two agree up to ties of the top
logits within rounding (more of them in half precision); either is greedy decoding of the same model.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling.trainer.batches import sequence_ids, token_arrays
from scaling.trainer.decode import generate_greedy_cached
from scaling.tasks.families import ANSWER_MARK
from scaling.tasks.grader import Grader, reads_first_answer_line_only, verify_example
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer
from scaling.trainer.train import token_losses

# A row may write this much more than its family's longest gold completion: a chain a step longer than
# gold (a step is at most about a quarter of a multi-step chain), or a few characters of a longer number
# in a short one, still reaches its answer line, so its grade is the one an unbounded decode would give.
MARGIN_FRACTION, MARGIN_MIN_TOKENS = 0.25, 8


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _teacher_forced_pass(params, batch: dict, graphdef: nnx.GraphDef):
    """Each row's summed completion-token loss, correct tokens and completion tokens (3xB), and where greedy
    decoding leaves the gold completion: the row position of the first completion target the argmax misses
    (-1: none), and the argmax there."""
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(batch["inputs"], batch["positions"], batch["segments"])
    weights_BxT = batch["loss_mask"]
    loss_B = (token_losses(logits_BxTxV, batch["targets"]) * weights_BxT).sum(-1)
    argmax_BxT = logits_BxTxV.argmax(-1)
    hits_BxT = argmax_BxT == batch["targets"]
    misses_BxT = ~hits_BxT & (weights_BxT > 0)
    miss_B = jnp.where(misses_BxT.any(-1), misses_BxT.argmax(-1), -1)
    chosen_B = jnp.take_along_axis(argmax_BxT, jnp.maximum(miss_B, 0)[:, None], -1)[:, 0]
    return jnp.stack([loss_B, (hits_BxT * weights_BxT).sum(-1), weights_BxT.sum(-1)]), miss_B, chosen_B


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """array with zero rows appended up to `rows`, so every batch has one shape."""
    return np.concatenate([array, np.zeros((rows - len(array), *array.shape[1:]), array.dtype)])


def _by_length(needs: np.ndarray, batch_size: int, longest: int, steps: np.ndarray | None = None):
    """Batches of row indices, shortest need first, each with its buffer length: the bucket of its longest need,
    never past `longest` (the model's positions may end there). Given each row's most decode `steps`, rows of
    one bucket go fewest steps first instead: a batch decodes as many steps as its longest row, so rows that
    resume late in their budget finish together."""
    order = np.argsort(needs, kind="stable") if steps is None else np.lexsort((steps, [shape_bucket(n) for n in needs]))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield index, min(shape_bucket(int(needs[index].max())), longest)


def decode_budget(gold_tokens: int) -> int:
    """New tokens a row may decode when the longest gold completion of its kind takes `gold_tokens`."""
    return gold_tokens + max(MARGIN_MIN_TOKENS, math.ceil(MARGIN_FRACTION * gold_tokens))


def decode_budgets(splits: dict[str, list[Example]], tokenizer: Tokenizer = CHARACTERS) -> dict[str, dict[str, int]]:
    """Each split's budget per family: `decode_budget` of the family's longest gold completion (end of sequence
    included) in that split, in `tokenizer`'s tokens."""
    budgets: dict[str, dict[str, int]] = {}
    for split, examples in splits.items():
        longest: dict[str, int] = {}
        for example in examples:
            longest[example.family] = max(longest.get(example.family, 0), len(tokenizer.completion_ids(example)))
        budgets[split] = {family: decode_budget(gold) for family, gold in longest.items()}
    return budgets


def shape_bucket(length: int) -> int:
    """The generation buffer length for rows that need `length` tokens: the next power of two or one and a half
    times one (16, 24, 32, 48, 64, 96, ...), so buffers waste at most a third and a grid compiles a few shapes."""
    power = 16
    while power < length:
        if power * 3 // 2 >= length:
            return power * 3 // 2
        power *= 2
    return power


# States of the answer-line automaton after the mark's characters: whitespace only since the mark, in the answer
# line, and past the newline that ends it (the last state: the row is finished).
_AFTER_MARK, _IN_ANSWER, _ANSWERED = range(len(ANSWER_MARK.strip()), len(ANSWER_MARK.strip()) + 3)


def _next_state(state: int, char: str) -> int:
    """The automaton's step on one character, mirroring `scaling.tasks.grader.parse_completion`: steps end at the
    first occurrence of the mark, and the answer is the first line of what follows, leading whitespace skipped.
    U+FFFD (part of a multi-byte character, as one id of a byte-level tokenizer decodes alone) counts as
    whitespace: that can only make a row stop later, never earlier."""
    mark, blank = ANSWER_MARK.strip(), char.isspace() or char == "\ufffd"
    if state < _AFTER_MARK:
        matched = mark[:state] + char
        while matched and not mark.startswith(matched):  # the longest prefix of the mark the text now ends with
            matched = matched[1:]
        return len(matched)
    if state == _AFTER_MARK:
        return _AFTER_MARK if blank else _IN_ANSWER
    return _ANSWERED if state == _ANSWERED or char == "\n" else _IN_ANSWER


@functools.lru_cache(maxsize=4)
def answer_line_automaton(tokenizer: Tokenizer) -> np.ndarray:
    """The stop automaton (`generate_greedy_cached`'s stop_VxS) that finishes a row once it has written the line
    that ends its first answer: after it, `parse_completion` reads nothing that can change a grade.

    Each id's step is its own text's characters, read as the text it adds after an ordinary character (so a
    tokenizer that drops a leading space at the start of a decode does not hide it). Exact for the character
    tokenizer, whose text is one character per id. For a Hugging Face tokenizer it holds wherever a completion's
    text is its ids' texts in a row, which byte-level BPE (SmolLM2's, GPT-2's) gives for every id of whole
    characters; the mark and newline may be split or merged across ids in any way. An id whose text cannot be
    read after the anchor breaks a partial mark and is otherwise no step: a row can only stop later for it
    (at worst at end of sequence or its budget), never earlier."""
    anchor = tokenizer.encode("0")
    before = tokenizer.decode(anchor)
    stop_VxS = np.tile(np.arange(_ANSWERED + 1, dtype=np.int32), (tokenizer.vocab_size, 1))
    for token in range(tokenizer.vocab_size):
        text = tokenizer.decode([*anchor, token])
        if not text.startswith(before):
            stop_VxS[token, :_AFTER_MARK] = 0
            continue
        for start in range(_ANSWERED):
            state = start
            for char in text[len(before):]:
                state = _next_state(state, char)
            stop_VxS[token, start] = state
    return stop_VxS


def _read(written: np.ndarray, eos_id: int, stop_VxS: np.ndarray | None) -> tuple[int, int, bool]:
    """How many of `written` (a row's tokens after its prompt) the row generated, the stop automaton's state
    after them, and whether they finish the row: through its end of sequence or the token that finished its
    answer line (finished), or all of them (not finished)."""
    state = 0
    for count, token in enumerate(written.tolist(), start=1):
        if token == eos_id:
            return count, state, True
        if stop_VxS is not None:
            state = int(stop_VxS[token, state])
            if state == stop_VxS.shape[1] - 1:
                return count, state, True
    return len(written), state, False


def _generations(
    graphdef: nnx.GraphDef, params, examples: list[Example], drafts: list[np.ndarray], budgets: np.ndarray,
    rooms: np.ndarray, batch_size: int, tokenizer: Tokenizer, stop_VxS: np.ndarray | None,
) -> list[np.ndarray]:
    """Each example's generated tokens, at most its budget and as far as its room (prompt and generation in one
    row): its draft (the tokens greedy decoding is known to write first, see `_draft`), then, unless the draft
    finishes the row or spends its budget, what greedy decoding appends after prompt and draft. Those rows are
    decoded `batch_size` at a time by the length they need and the budget they have left (`_by_length`), each
    with that budget and the automaton where its draft left it. The prefill covers the bucket of the batch's
    longest prompt and draft, not the whole buffer."""
    prompts = [tokenizer.prompt_ids(example) for example in examples]
    prompt_lengths = np.array([len(p) for p in prompts], np.int32)
    max_new = np.maximum(np.minimum(budgets, rooms - prompt_lengths), 0).astype(np.int32)
    written = [draft[:budget] for draft, budget in zip(drafts, max_new)]
    starts, states, decoded = np.zeros(len(examples), np.int32), np.zeros(len(examples), np.int32), []
    for i, accepted in enumerate(written):
        _, states[i], finished = _read(accepted, tokenizer.eos_id, stop_VxS)
        starts[i] = prompt_lengths[i] + len(accepted)
        if not finished and len(accepted) < max_new[i]:
            decoded.append(i)
    decoded = np.array(decoded, np.int64)
    stop = None if stop_VxS is None else jnp.asarray(stop_VxS)
    ends = prompt_lengths + max_new
    for batch, length in _by_length(ends[decoded], batch_size, int(rooms.max()), (ends - starts)[decoded]):
        index = decoded[batch]
        tokens = np.full((batch_size, length), tokenizer.pad_id, np.int32)
        for row, i in enumerate(index):
            tokens[row, :starts[i]] = prompts[i] + written[i].tolist()
        # Padding rows get a one-token prompt and no budget, so that they finish at once and cost nothing.
        lengths, row_budgets, row_states = (np.full(batch_size, fill, np.int32) for fill in (1, 0, 0))
        lengths[:len(index)], row_budgets[:len(index)] = starts[index], ends[index] - starts[index]
        row_states[:len(index)] = states[index]
        span = min(shape_bucket(int(lengths.max())), length)
        generated = np.asarray(generate_greedy_cached(params, tokens, lengths, graphdef=graphdef, max_new=row_budgets,
                                                      eos_id=tokenizer.eos_id, stop_VxS=stop, prompt_span=span,
                                                      states_B=row_states))
        for row, i in enumerate(index):
            written[i] = generated[row, prompt_lengths[i]:ends[i]]
    return written


def _grades(
    examples: list[Example], written: list[np.ndarray], tokenizer: Tokenizer, grader: Grader,
    stop_VxS: np.ndarray | None, keep_text: bool,
) -> list[dict]:
    """Each example's grade (`scaling.schema.GRADE_COLUMNS`) of the tokens it generated."""
    grades = []
    for example, tokens in zip(examples, written):
        generated = _read(tokens, tokenizer.eos_id, stop_VxS)[0]
        text = tokenizer.decode(tokens[:generated])
        result = grader(example, text)
        grades.append({
            "family": example.family, "phrasing": example.phrasing, "difficulty": example.difficulty,
            "distance": example.distance, "key": example.key, "chance": example.chance, "answer_correct": result.answer_correct,
            "process_score": result.process_acc,
            "chain_correct": np.nan if result.chain_correct is None else result.chain_correct, "steps": result.steps,
            "generated_tokens": generated,
        } | ({"completion": text} if keep_text else {}))
    return grades


def _draft(completion: list[int], miss: int, chosen: int) -> np.ndarray:
    """The tokens greedy decoding writes first after a prompt, from its gold `completion` teacher-forced: all of
    it where every argmax hit (`miss` -1), else the completion before its first missed token (`miss`, its index
    in the completion) and the argmax (`chosen`) there."""
    return np.array(completion if miss < 0 else [*completion[:miss], chosen], np.int32)


def _teacher_forced(
    graphdef: nnx.GraphDef, params, examples: list[Example], longest: int, batch_size: int, tokenizer: Tokenizer,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each example's summed completion-token loss, correct tokens and completion tokens (3xN), teacher-forced in
    batches by length (`_by_length`; `longest`: the longest buffer), and its draft (`_draft`)."""
    sequences = [sequence_ids(example, tokenizer) for example in examples]
    needs = np.array([len(ids) - 1 for ids, _ in sequences])
    sums_3xN, misses, chosen = np.zeros((3, len(examples))), np.zeros(len(examples), int), np.zeros(len(examples), int)
    for index, length in _by_length(needs, batch_size, longest):
        arrays = token_arrays([examples[i] for i in index], length, tokenizer)
        batch = {name: _padded(value, batch_size) for name, value in arrays.take(np.arange(len(index))).items()}
        sums_3xB, miss_B, chosen_B = _teacher_forced_pass(params, batch, graphdef=graphdef)
        sums_3xN[:, index] = np.asarray(sums_3xB)[:, :len(index)]
        misses[index], chosen[index] = np.asarray(miss_B)[:len(index)], np.asarray(chosen_B)[:len(index)]
    # Row position p predicts the token at p + 1, so the completion's token k is the target at prompt length - 1 + k.
    drafts = [_draft(ids[prompt_length:], miss - (prompt_length - 1) if miss >= 0 else -1, token)
              for (ids, prompt_length), miss, token in zip(sequences, misses, chosen)]
    return sums_3xN, drafts


def _metrics(sums_3xN: np.ndarray, grades: list[dict]) -> dict[str, float]:
    """A split's metrics from its rows' teacher-forced sums and its examples' grades."""
    loss_sum, correct_sum, weight_sum = (float(x) for x in sums_3xN.sum(-1))
    return {
        "loss": loss_sum / max(weight_sum, 1.0),
        "token_acc": correct_sum / max(weight_sum, 1.0),
        "answer_acc": float(np.mean([g["answer_correct"] for g in grades])),
        "process_acc": float(np.mean([g["process_score"] for g in grades])),
        "chain_acc": float(np.mean([g["chain_correct"] for g in grades])),
        "n": float(len(grades)),
    }


def _stop_for(tokenizer: Tokenizer, grader: Grader) -> np.ndarray | None:
    """The stop automaton of rows graded by `grader`: the answer line's, where nothing after it can change a grade."""
    return answer_line_automaton(tokenizer) if reads_first_answer_line_only(grader) else None


def evaluate_split(
    graphdef: nnx.GraphDef, params, examples: list[Example], length: int, batch_size: int,
    tokenizer: Tokenizer = CHARACTERS, grader: Grader = verify_example,
) -> dict[str, float]:
    """All metrics of one split (see `grade_split`)."""
    return grade_split(graphdef, params, examples, length, batch_size, tokenizer, grader)[0]


def grade_split(
    graphdef: nnx.GraphDef, params, examples: list[Example], length: int, batch_size: int,
    tokenizer: Tokenizer = CHARACTERS, grader: Grader = verify_example, keep_text: bool = False,
) -> tuple[dict[str, float], list[dict]]:
    """All metrics of one split, its examples tokenized by `tokenizer` (the one the model was trained with)
    and graded by `grader` (the synthetic families' verifiers, or a dataset's answer extractor), and each
    example's grade (`scaling.schema.GRADE_COLUMNS`; with `keep_text`, also the decoded completion it graded,
    as "completion"). Every row is `length` tokens, prompt and generation together, and may generate until it
    is full (no budget: `evaluate_splits` gives each row one), or until its answer line ends where the grader
    reads nothing after it. Where steps cannot be verified, process and chain accuracy are NaN: undefined, not
    zero."""
    stop_VxS = _stop_for(tokenizer, grader)
    rooms = np.full(len(examples), length)
    sums_3xN, drafts = _teacher_forced(graphdef, params, examples, length, batch_size, tokenizer)
    written = _generations(graphdef, params, examples, drafts, rooms, rooms, batch_size, tokenizer, stop_VxS)
    grades = _grades(examples, written, tokenizer, grader, stop_VxS, keep_text)
    return _metrics(sums_3xN, grades), grades


def evaluate_splits(
    graphdef: nnx.GraphDef, params, splits: dict[str, list[Example]], lengths: dict[str, int], batch_size: int,
    tokenizer: Tokenizer = CHARACTERS, grader: Grader = verify_example,
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict]]]:
    """All metrics of every split, and every example's grade in its split's order of examples.

    The rows of all splits are run together, shortest first, in buckets of buffer length (`shape_bucket`),
    never longer than the longest of `lengths` (each split's longest sequence), teacher-forced, then generated
    from their verified drafts (the module's docstring).
    Generation gives each row the budget of its split and family (`decode_budgets`), within its split's
    length, and stops it at its answer line where the grader allows (`answer_line_automaton`)."""
    stop_VxS = _stop_for(tokenizer, grader)
    budgets = decode_budgets(splits, tokenizer)
    rows = [(split, example) for split, examples in splits.items() for example in examples]
    examples = [example for _, example in rows]
    rooms = np.array([lengths[split] for split, _ in rows])
    row_budgets = np.array([budgets[split][example.family] for split, example in rows])
    sums_3xN, drafts = _teacher_forced(graphdef, params, examples, int(rooms.max()), batch_size, tokenizer)
    written = _generations(graphdef, params, examples, drafts, row_budgets, rooms, batch_size, tokenizer, stop_VxS)
    graded = _grades(examples, written, tokenizer, grader, stop_VxS, keep_text=False)
    metrics, grades, start = {}, {}, 0
    for split, split_examples in splits.items():
        rows_of_split = slice(start, start + len(split_examples))
        grades[split] = graded[rows_of_split]
        metrics[split] = _metrics(sums_3xN[:, rows_of_split], grades[split])
        start += len(split_examples)
    return metrics, grades
