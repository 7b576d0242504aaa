"""Sequence packing for SFT: several examples per row, each its own segment, so padding nearly vanishes.

An example keeps exactly the tokens, targets and loss mask `token_arrays` gives it alone; inside a
row it has its own segment id (1, 2, 3, ...; 0 is padding) and positions restarting at 0. Since the
model attends only within a segment, a packed row computes the same logits as its examples run alone.
"""

from __future__ import annotations

import bisect
import itertools

import numpy as np

from scaling.trainer.batches import TokenArrays, sequence_ids
from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer


def placements(sizes: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, offset and segment id (1, 2, ... within the row) of items of `sizes` tokens in rows of `length`.

    Best-fit decreasing: items go longest first (ties in input order) into the fullest row that still
    has room, or a new row; the result depends only on the input, so packing is deterministic.
    """
    sizes = np.asarray(sizes, np.int64)
    assert sizes.ndim == 1 and (sizes >= 1).all() and (sizes <= length).all()
    rows = np.empty(sizes.size, np.int64)
    offsets = np.empty(sizes.size, np.int64)
    segments = np.empty(sizes.size, np.int32)
    used: list[int] = []  # tokens taken in each row so far
    held: list[int] = []  # items placed in each row so far
    rows_with_room: dict[int, list[int]] = {}  # free tokens -> rows with exactly that many
    rooms: list[int] = []  # sorted keys of rows_with_room: bisect finds the tightest fit in O(log)
    for item in np.argsort(-sizes, kind="stable").tolist():
        need = int(sizes[item])
        k = bisect.bisect_left(rooms, need)
        if k == len(rooms):
            row, room = len(used), length
            used.append(0)
            held.append(0)
        else:
            room = rooms[k]
            row = rows_with_room[room].pop()
            if not rows_with_room[room]:
                del rows_with_room[room]
                rooms.pop(k)
        held[row] += 1
        rows[item], offsets[item], segments[item] = row, used[row], held[row]
        used[row] += need
        left = room - need
        if left:
            if left not in rows_with_room:
                rows_with_room[left] = []
                bisect.insort(rooms, left)
            rows_with_room[left].append(row)
    return rows, offsets, segments


def pack(examples: list[Example], length: int, tokenizer: Tokenizer = CHARACTERS) -> TokenArrays:
    """Examples packed into rows of `length` tokens, with per-example segments and positions."""
    sequences = [sequence_ids(example, tokenizer) for example in examples]
    sizes = np.fromiter((len(ids) - 1 for ids, _ in sequences), np.int64, len(sequences))
    for example, size in zip(examples, sizes.tolist()):
        if size > length:
            raise ValueError(f"example {example.id} needs {size} tokens, more than the {length} available")
    rows, offsets, segment_of_example = placements(sizes, length)
    n_rows = int(rows.max()) + 1 if len(examples) else 0
    # One scatter for the whole pool: each token's flat destination in the NxT arrays.
    example_of_token = np.repeat(np.arange(len(examples)), sizes)
    first_token = np.cumsum(sizes) - sizes
    position = np.arange(int(sizes.sum())) - first_token[example_of_token]
    destination = (rows * length + offsets)[example_of_token] + position
    flat_ids = np.fromiter(itertools.chain.from_iterable(ids for ids, _ in sequences), np.int32)  # EOS included
    # An example's k-th token sits at k + (its index) in flat_ids: inputs drop its EOS, targets its first.
    source = first_token[example_of_token] + example_of_token + position
    prompt_lens = np.fromiter((prompt_len for _, prompt_len in sequences), np.int64, len(sequences))
    # Same rule as token_arrays: targets from the first completion token (and EOS) on carry loss.
    trained = position >= prompt_lens[example_of_token] - 1

    def scatter(values: np.ndarray, dtype, fill=0) -> np.ndarray:
        flat = np.full(n_rows * length, fill, dtype)  # padding: no loss, position 0, segment 0
        flat[destination] = values
        return flat.reshape(n_rows, length)

    pad_id = tokenizer.pad_id
    inputs, targets = scatter(flat_ids[source], np.int32, pad_id), scatter(flat_ids[source + 1], np.int32, pad_id)
    loss_mask = scatter(trained, np.float32)
    positions, segments = scatter(position, np.int32), scatter(segment_of_example[example_of_token], np.int32)
    return TokenArrays(inputs, targets, loss_mask, positions, segments)


def packing_efficiency(arrays: TokenArrays) -> float:
    """Fraction of the arrays' tokens that are real (non-padding) tokens."""
    return float((arrays.segments != 0).mean()) if arrays.segments.size else 0.0
