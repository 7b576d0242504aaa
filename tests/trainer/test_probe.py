"""A base's measured capability must not depend on how the measurement is batched."""

import numpy as np
import pytest

from scaling.tasks.corpus import probe_items
from scaling.tasks.tokenizer import CHARACTERS
from scaling.trainer import probe
from scaling.trainer.config import preset
from scaling.trainer.model import init_model


@pytest.fixture(scope="module")
def base():
    cfg = preset("tiny", CHARACTERS.vocab_size, 128)
    return cfg, *init_model(cfg, 3)


def test_chunks_bounded_by_the_logits_budget_give_the_same_measures(base, monkeypatch):
    cfg, graphdef, params = base
    whole = probe.measure_base(cfg, params, CHARACTERS)
    # Seven rows per forward pass: the probe's ~640 rows and the corpus's rows split unevenly, the last chunk padded.
    monkeypatch.setattr(probe, "LOGITS_BUDGET", 7 * probe.ROW * CHARACTERS.vocab_size)
    chunked = probe.measure_base(cfg, params, CHARACTERS)
    assert chunked == pytest.approx(whole, rel=1e-6)
    assert 0.0 <= whole["base_probe_acc"] <= 1.0 and whole["base_loss"] > 0


def test_probe_rows_cut_to_the_longest_item_score_as_full_rows(base):
    cfg, graphdef, params = base
    sequences = []
    for item in probe_items(probe.PROBE_ITEMS)[:40]:
        prefix = CHARACTERS.encode(item.prefix)
        sequences += [(prefix + CHARACTERS.encode(choice), len(prefix)) for choice in item.choices]
    full = probe._summed_losses(graphdef, params, *probe._rows(sequences, CHARACTERS.pad_id), CHARACTERS.vocab_size)
    longest = max(len(ids) for ids, _ in sequences)
    assert longest < probe.ROW // 2
    cut = probe._summed_losses(graphdef, params, *probe._rows(sequences, CHARACTERS.pad_id, row=longest),
                               CHARACTERS.vocab_size)
    np.testing.assert_allclose(cut, full, rtol=1e-5)
