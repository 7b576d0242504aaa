"""The bad-input contract under generated input: bad tables, row conditions, grid specs and options.

Every case must end in exit status 2 with exactly one line on stderr, no traceback, nothing printed
before it, no file or folder created or changed, and no side effect of the input's own (the canary
files that hostile expressions try to write never appear). The cases run in this process through the
CLI's own entry point, so several hundred take seconds.
"""

import contextlib
import faulthandler
import json
import math
import operator
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scaling.cli import MAX_SAMPLE
from scaling.fit.expression import MAX_DEPTH, MAX_LENGTH, ExpressionError, parse
from scaling.interrupts import TERMINATING
from cli_helpers import assert_refused, run_cli

FUZZ = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CANARY = "canary"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding a good table (a power law in tokens, accuracies out of n), a good grid spec, and a
    canary folder outside it that hostile input aims at."""
    root = tmp_path_factory.mktemp("fuzz")
    work = root / "work"
    work.mkdir()
    tokens = np.geomspace(10, 10_000, 8)
    pd.DataFrame({"tokens": tokens, "loss": 1.5 + 4 * tokens ** -0.5, "acc": np.linspace(0.1, 0.9, 8), "n": 10,
                  "task": ["a", "b"] * 4}).to_csv(work / "good.csv", index=False)
    (work / "grid.toml").write_text(GRID)
    (root / "outside").mkdir()
    return work


def outside_canary(work: Path) -> Path:
    return work.parent / "outside" / CANARY


def refused(argv: list[str], work: Path) -> str:
    line = assert_refused(argv, work)
    assert not (work / CANARY).exists() and not outside_canary(work).exists()
    return line


FIT = ["fit", "good.csv", "--law", "power", "--y", "loss", "--x", "x=tokens"]


# --- bad tables --------------------------------------------------------------------------------------

NOT_A_NUMBER = st.from_regex(r"[A-Za-z_][A-Za-z_ ]{0,8}", fullmatch=True).filter(
    lambda text: text.strip().lower() not in {"nan", "na", "n/a", "null", "none", "inf", "infinity", "true", "false"}
    and text.strip() == text)
BAD_VALUES = {
    # column: values that make the table unfittable by the power law (loss) or the accuracy law (acc, n)
    "tokens": st.one_of(NOT_A_NUMBER, st.sampled_from([0.0, -1.0, math.inf, -math.inf, 1e39, 1e300, -1e300])),
    "loss": st.one_of(NOT_A_NUMBER, st.sampled_from([0.0, -0.5, math.inf, -math.inf, 1e39, 1e308])),
    "acc": st.one_of(NOT_A_NUMBER, st.floats(1.0001, 1e6), st.floats(-1e6, -1e-4), st.just(0.33)),
    "n": st.one_of(NOT_A_NUMBER, st.sampled_from([0, -3, 2.5, math.inf, 2**25, 1e300])),
}


@st.composite
def bad_tables(draw) -> tuple[pd.DataFrame | str, list[str]]:
    """A table (or raw file text) and the fit arguments it breaks."""
    kind = draw(st.sampled_from(["value", "value", "value", "all_missing", "header_only", "garbage"]))
    tokens = np.geomspace(10, 10_000, 8)
    table = pd.DataFrame({"tokens": tokens, "loss": 1.5 + 4 * tokens ** -0.5, "acc": 0.5, "n": 10}).astype(object)
    power = ["--law", "power", "--y", "loss", "--x", "x=tokens"]
    accuracy = ["--law", "accuracy", "--y", "acc", "--x", "x=tokens", "--n", "n"]
    if kind == "value":
        column = draw(st.sampled_from(list(BAD_VALUES)))
        rows = draw(st.lists(st.integers(0, len(table) - 1), min_size=1, max_size=3, unique=True))
        value = draw(BAD_VALUES[column])
        for row in rows:
            table.at[row, column] = value
        return table, (accuracy if column in ("acc", "n") else power)
    if kind == "all_missing":
        table["loss"] = None
        return table, power
    if kind == "header_only":
        return table.iloc[:0], power
    return draw(st.text(max_size=200)), power


@settings(FUZZ, max_examples=70)
@given(case=bad_tables(), suffix=st.sampled_from([".csv", ".parquet"]))
def test_a_bad_table_is_refused(case, suffix, workdir):
    table, argv = case
    path = workdir / f"bad{suffix}"
    if isinstance(table, str):
        path.write_text(table)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        _parquet(table, path)
    try:
        refused(["fit", path.name, *argv], workdir)
    finally:
        path.unlink()


def _parquet(table: pd.DataFrame, path: Path) -> None:
    """Mixed columns (numbers and text) go to Parquet as text, as a spreadsheet export would write them."""
    mixed = {c: table[c].map(lambda v: v if v is None else str(v)) for c in table.columns
             if table[c].map(type).nunique() > 1 or table[c].map(lambda v: isinstance(v, str)).any()}
    table.assign(**mixed).infer_objects().to_parquet(path)


# --- bad row conditions -------------------------------------------------------------------------------

HOSTILE = [
    f"@pd.io.common.os.system('touch {CANARY}') == 0",
    f"tokens > 0 and @Path('{CANARY}').write_text('x') > 0",
    f"@np.save('{CANARY}', 1)",
    f"__import__('os').system('touch {CANARY}')",
    f"open('{CANARY}', 'w')",
    f"tokens.__class__.__init__.__globals__['os'].system('touch {CANARY}')",
    "(lambda: 1)()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "tokens > 0 if True else @pd",
    "`tokens`.values",
]
names = st.sampled_from(["tokens", "loss", "task", "pd", "np", "os", "Path", "self", "__class__", "__builtins__", "x"])
attribute = st.tuples(names, st.sampled_from([".", ".__", "@"]), names).map("".join)
call = st.tuples(names, st.sampled_from(["(", "()", "(1)", "('a')", "[0]"])).map("".join)
at_name = names.map(lambda n: "@" + n)
dunder = st.from_regex(r"__[a-z]{1,8}__", fullmatch=True)
lambdas = st.sampled_from(["lambda x: x", "lambda: tokens", "(lambda: 1)()"])
fragments = st.one_of(attribute, call, at_name, dunder, lambdas, st.sampled_from(HOSTILE))
valid = st.sampled_from(["tokens > 100", "task == 'a'", "loss < 3", "tokens in [10, 100]"])


@st.composite
def bad_conditions(draw) -> str:
    shape = draw(st.sampled_from(["fragment", "joined", "long", "unbalanced", "noise", "not_a_condition"]))
    if shape == "fragment":
        return draw(fragments)
    if shape == "joined":  # a hostile piece hidden behind a good condition, or in front of it
        good, bad, joint = draw(valid), draw(fragments), draw(st.sampled_from([" and ", " or ", " & ", " | "]))
        return joint.join([good, bad] if draw(st.booleans()) else [bad, good])
    if shape == "long":
        return " and ".join([draw(valid)] * draw(st.integers(150, 600)))
    if shape == "unbalanced":
        depth = draw(st.integers(1, 200))
        return "(" * depth + draw(valid) + ")" * draw(st.integers(0, depth - 1))
    if shape == "not_a_condition":
        return draw(st.sampled_from(["tokens", "tokens + 1", "loss * 2", "'text'", "3", "tokens and loss", "nope > 1"]))
    text = draw(st.text(max_size=80))
    try:
        parse(text)
    except ExpressionError:
        return text
    assume(False)  # noise that happens to be a valid condition is not a bad input


@settings(FUZZ, max_examples=90)
@given(condition=bad_conditions(), flag=st.sampled_from(["--where", "--holdout"]))
def test_a_bad_condition_is_refused_before_anything_runs(condition, flag, workdir):
    assume("\x00" not in condition)  # the operating system cannot pass a NUL in an argument
    line = refused([*FIT, flag, condition], workdir)
    assert flag in line


# --- bad grid specs -----------------------------------------------------------------------------------

GRID = """name = "fuzz"
[axes]
size = ["tiny"]
seed = [0]
[data]
families = ["add", "reverse"]
ood_families = ["sub"]
examples = 100
[train]
budgets = [8, 16]
batch_size = 4
[eval]
splits = ["train", "id", "ood_family"]
n = 8
"""
BAD_KEYS = {
    "[axes]": {"size": ['["huge"]', '"tiny"x', "[1]", '["hf:no/such/folder"]'], "diversity": ["[0]", "[3]", "[-1]", '["2"]'],
               "quality": ["[1.5]", "[-0.1]", "[nan]", "[inf]"], "cot": ['["long"]', "[1]"], "seed": ["[-1]", "[1.5]", "[2147483648]", "[18446744073709551616]"],
               "pretrain_tokens": ["[-5]", '["x"]']},
    "[data]": {"families": ['["nope"]', '["add", "sub"]', "[]", "7"], "examples": ["0", "-3", "1.5", '"many"'],
               "ood_families": ['["mul_then"]'], "phrasings": ["-1"], "pack_length": ["-2"]},
    "[train]": {"budgets": ["[]", "[0]", "[-8]", '["8"]', "[16, 8]"], "batch_size": ["0", "-4", "2.5"], "lr": ["-1e-3", "0", "nan"],
                "schedule": ['"linear"', "3"], "warmup_steps": ["-1"], "weight_decay": ["-0.1"], "decay_fraction": ["1.5", "-0.2"]},
    "[eval]": {"splits": ['["test"]', "[]", '["ood_compose"]'], "n": ["0", "-1"], "batch_size": ["0"]},
    "[run]": {"executor": ['"cloud"', "1"], "workers": ["0", "-2"], "heartbeat_s": ["0", "-1", "1e9"]},
}


@st.composite
def bad_specs(draw) -> str:
    shape = draw(st.sampled_from(["value", "value", "unknown_key", "unknown_section", "syntax"]))
    if shape == "value":
        section = draw(st.sampled_from(list(BAD_KEYS)))
        key = draw(st.sampled_from(list(BAD_KEYS[section])))
        value = draw(st.sampled_from(BAD_KEYS[section][key]))
        lines = [line for line in GRID.splitlines() if not line.startswith(f"{key} =")]
        if section not in lines:
            lines.append(section)
        lines.insert(lines.index(section) + 1, f"{key} = {value}")
        return "\n".join(lines) + "\n"
    if shape == "unknown_key":
        section = draw(st.sampled_from(list(BAD_KEYS)))
        key = draw(st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(
            lambda k: k not in {"size", "pretrain_tokens", "diversity", "quality", "cot", "seed", "families",
                                "ood_families", "examples", "phrasings", "pack_length", "budgets", "batch_size", "lr",
                                "warmup_steps", "weight_decay", "grad_clip", "schedule", "decay_fraction", "steps_axis",
                                "checkpoint_every", "pretrain_batch_size", "pretrain_lr", "pretrain_context", "splits",
                                "n", "executor", "workers", "heartbeat_s", "stale_after_s", "save_models", "ray",
                                "slurm", "name"}))
        return GRID.replace(f"{section}\n", f"{section}\n{key} = 1\n") if section in GRID else GRID + f"{section}\n{key} = 1\n"
    if shape == "unknown_section":
        return GRID + f"[{draw(st.from_regex(r'[a-z]{1,10}', fullmatch=True).filter(lambda s: s not in ('axes', 'data', 'train', 'eval', 'run')))}]\nx = 1\n"
    cut = draw(st.integers(1, len(GRID) - 1))
    return GRID[:cut] + draw(st.sampled_from(["= = 1\n", "[[\n", '"unterminated\n', "\x01\n", "key\n"])) + GRID[cut:]


@settings(FUZZ, max_examples=60)
@given(text=bad_specs())
def test_a_bad_grid_spec_is_refused_and_nothing_is_created(text, workdir):
    spec = workdir / "bad.toml"
    spec.write_text(text)
    try:
        refused(["run", "bad.toml", "--out", "new-run"], workdir)
    finally:
        spec.unlink()


# --- bad options --------------------------------------------------------------------------------------

@st.composite
def bad_options(draw) -> list[str]:
    command = draw(st.sampled_from(["fit", "run", "sample", "other"]))
    if command == "fit":
        option, value = draw(st.one_of(
            st.tuples(st.just("--chains"), st.integers(-3, 1)),
            st.tuples(st.sampled_from(["--samples", "--warmup"]), st.integers(-100, 0)),
            st.tuples(st.just("--threshold"), st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf])),
            st.tuples(st.just("--seed"), st.one_of(st.integers(-(2**40), -1), st.integers(2**31, 2**62))),
            st.tuples(st.just("--method"), st.sampled_from(["mcmc", "NUTS", "", "huber2"])),
            st.tuples(st.just("--split"), st.sampled_from(["id", "train"])),
            st.tuples(st.just("--by"), st.sampled_from(["nope", "Task", ""])),
            st.tuples(st.just("--n"), st.sampled_from(["nope", "task"])),
            st.tuples(st.just("--compare"), st.sampled_from(["power", "power,nope", "power,power"])),
            st.tuples(st.just("--x"), st.sampled_from(["x", "=tokens", "x=", "q=tokens", "x=nope"])),
        ))
        return [*FIT, option, str(value)]
    if command == "run":
        option = draw(st.sampled_from(["--workers", "--address", "--executor", "--out"]))
        value = {"--workers": str(draw(st.integers(-5, 0))), "--address": draw(st.text(min_size=1, max_size=20)),
                 "--executor": draw(st.sampled_from(["cloud", "LOCAL", "ray2", ""])), "--out": "good.csv"}[option]
        return ["run", "grid.toml", option, value] + (["--out", "new-run"] if option != "--out" else [])
    if command == "sample":
        option, value = draw(st.one_of(
            st.tuples(st.just("--n"), st.one_of(st.integers(MAX_SAMPLE + 1, 10**15), st.integers(-10, 0))),
            st.tuples(st.just("--seed"), st.integers(-(2**40), -1)),
            st.tuples(st.just("--quality"), st.sampled_from([1.5, -0.5, math.nan, math.inf])),
            st.tuples(st.just("--family"), st.sampled_from(["nope", "ADD", "", "add_then_reverse"])),
            st.tuples(st.just("--cot"), st.sampled_from(["long", ""])),
        ))
        base = {"--family": "add", "--split": "id"}
        base[option] = str(value)
        return ["data", "sample", *[item for pair in base.items() for item in pair]]
    return draw(st.sampled_from([
        ["fit", "good.csv"], ["fit", "--law", "power", "--y", "loss"], ["fit", "missing.csv", "--law", "power", "--y", "loss"],
        ["fit", ".", "--law", "power", "--y", "loss"], ["status", "good.csv"], ["collect", "."], ["collect", "nowhere"],
        ["data", "check", "missing.jsonl"], ["data", "check", "good.csv"], ["import-hf", "nowhere", "--out", "model"],
        ["export-hf", "nowhere", "--out", "exported"], ["figures", "--paper", "nowhere"], ["run", "missing.toml"],
        ["fit", "good.csv", "--law", "power", "--y", "loss", "--x", "x=tokens", "--out", "good.csv"],
        ["fit", "good.csv", "--law", "power", "--y", "loss", "--x", "x=tokens", "--pool"],
        ["nosuchcommand"], ["fit", "--nosuchoption"],
    ]))


@settings(FUZZ, max_examples=80)
@given(argv=bad_options())
def test_a_bad_option_is_refused_and_nothing_is_created(argv, workdir):
    assume(all("\x00" not in item for item in argv))
    refused(argv, workdir)


# --- huge numeric options -----------------------------------------------------------------------------

HUGE_NUMBERS = st.sampled_from(["1e309", "-1e309", "nan", str(2**63), str(10**30), "-1", str(-(2**63))])
NUMERIC_SPEC_KEYS = {  # section: keys whose huge, negative, infinite or overflowing values must all be refused
    "[axes]": ["pretrain_tokens", "seed", "diversity"],
    "[data]": ["examples", "pack_length"],
    "[train]": ["batch_size", "budgets", "warmup_steps", "checkpoint_every", "pretrain_batch_size", "pretrain_context"],
    "[eval]": ["n", "batch_size", "memorization_n", "seed"],
    "[run.slurm]": ["timeout_min", "mem_gb", "cpus_per_task"],
    "[run.ray]": ["max_retries", "num_cpus"],
}


@st.composite
def huge_spec_values(draw) -> tuple[str, str]:
    """A grid spec with one numeric key set to a huge, negative, infinite or overflowing value, and the key."""
    section = draw(st.sampled_from(list(NUMERIC_SPEC_KEYS)))
    key = draw(st.sampled_from(NUMERIC_SPEC_KEYS[section]))
    value = draw(HUGE_NUMBERS)
    written = f"[{value}]" if section == "[axes]" or key == "budgets" else value
    lines = [line for line in GRID.splitlines() if not (line.startswith(f"{key} =") and _in_section(GRID, line, section))]
    if section not in lines:
        lines.append(section)
    lines.insert(lines.index(section) + 1, f"{key} = {written}")
    return "\n".join(lines) + "\n", key


def _in_section(text: str, line: str, section: str) -> bool:
    """Whether `line` of `text` lies in `section`."""
    current = ""
    for candidate in text.splitlines():
        if candidate.startswith("["):
            current = candidate
        if candidate == line:
            return current == section
    return False


@settings(FUZZ, max_examples=60)
@given(case=huge_spec_values(), dry_run=st.booleans())
def test_a_huge_numeric_spec_value_is_refused_naming_its_key(case, dry_run, workdir):
    text, key = case
    spec = workdir / "huge.toml"
    spec.write_text(text)
    try:
        line = refused(["run", "huge.toml", "--out", "new-run", *(["--dry-run"] if dry_run else [])], workdir)
    finally:
        spec.unlink()
    assert key in line, line


@st.composite
def huge_options(draw) -> list[str]:
    """A command with one numeric option set to a huge, negative, infinite or overflowing value."""
    value = draw(HUGE_NUMBERS)
    return draw(st.sampled_from([
        ["run", "grid.toml", "--out", "new-run", "--workers", value],
        ["run", "grid.toml", "--out", "new-run", "--dry-run", "--workers", value],
        ["status", ".", "--watch", "--every", value],
        ["data", "sample", "--family", "add", "--split", "id", "--n", value],
        [*FIT, "--seed", value], [*FIT, "--chains", value], [*FIT, "--samples", value], [*FIT, "--warmup", value],
    ]))


@settings(FUZZ, max_examples=60)
@given(argv=huge_options())
def test_a_huge_numeric_option_is_refused(argv, workdir):
    # A value that is not an int where one is asked for is click's one-line usage error; an int out of range names it.
    refused(argv, workdir)


# --- pathological expressions -------------------------------------------------------------------------
# Row conditions at the edges of what a float and the grammar hold: power towers, literals beyond the floats,
# nesting near the depth cap, expressions near the length cap, empty lists, comparisons chained across text and
# numbers. Each case carries its expected outcome, worked out here with plain Python floats and comparisons row
# by row (never the package's evaluator): refused in one line naming what, or the rows it selects. A fit takes
# 10-40 s on this machine, so `scaling fit` is stopped by a check that comes after the condition is applied
# (a valid --where reaches the missing --y; a valid --holdout reaches --pool's one group); `scaling figures`
# runs to the end, and its table counts the rows the condition selected.


TOKENS = [10.0 * 10 ** (3 * i / 7) for i in range(8)]  # the table's rows: tokens 10 .. 10,000, task a, b, a, ...
TASKS = ["a", "b"] * 4
LEVELS_PER_PARENTHESIS = 3  # or, and, not: a parenthesis re-enters them (scaling.fit.expression's grammar)
OUTSIDE = 2  # levels taken before the first parenthesis


@dataclass(frozen=True)
class Expected:
    """What a condition must do: be refused naming `named`, or select exactly `rows`."""

    named: str | None  # a part of the one-line refusal; None for a valid condition
    rows: tuple[bool, ...] = ()  # a valid condition's value on each row of the table


def _refused(named: str) -> Expected:
    return Expected(named)


def _selects(holds) -> Expected:
    return Expected(None, tuple(bool(holds(tokens, task)) for tokens, task in zip(TOKENS, TASKS)))


def _float_power(base: float, exponent: float) -> float:
    try:
        return base ** exponent
    except OverflowError:
        return math.inf


@st.composite
def power_towers(draw) -> tuple[str, Expected]:
    """b ** b ** ... ** b (right to left, as in Python) against tokens, or tokens raised to a tower."""
    base, height = draw(st.sampled_from(["0.5", "1", "1.5", "2", "3", "10"])), draw(st.integers(2, 7))
    tower, value = " ** ".join([base] * height), float(base)
    for _ in range(height - 1):
        if math.isinf(value := _float_power(float(base), value)):
            return f"{tower} < tokens", _refused("overflows")
    if draw(st.booleans()):
        return f"{tower} < tokens", _selects(lambda tokens, task: value < tokens)
    rows = [_float_power(tokens, value) for tokens in TOKENS]
    if any(math.isinf(row) for row in rows):
        return f"tokens ** {tower} > 1", _refused("overflows")
    return f"tokens ** {tower} > 1", _selects(lambda tokens, task: _float_power(tokens, value) > 1)


@st.composite
def edge_literals(draw) -> tuple[str, Expected]:
    """A literal near or beyond the floats' ends: 1e309 reads as inf, 1e-400 as 0."""
    text = f"{draw(st.sampled_from(['1', '9.99', '0.5', '0', '17']))}e{draw(st.integers(-420, 420))}"
    value = float(text)
    if math.isinf(value):
        return f"tokens < {text}", _refused("beyond the largest float")
    if value == 0 and float(text.partition("e")[0]) != 0:
        return f"tokens > {text}", _refused("too small for a float")
    return f"tokens < {text}", _selects(lambda tokens, task: tokens < value)


@st.composite
def deep_nesting(draw) -> tuple[str, Expected]:
    """Parentheses, `not`s or minus signs around a condition, at depths either side of the cap."""
    shape = draw(st.sampled_from(["parentheses", "not", "minus"]))
    if shape == "parentheses":
        depth, deepest = draw(st.integers(10, 20)), (MAX_DEPTH - OUTSIDE) // LEVELS_PER_PARENTHESIS
        text, holds = "(" * depth + "tokens > 100" + ")" * depth, lambda tokens, task: tokens > 100
    elif shape == "not":
        depth, deepest = draw(st.integers(MAX_DEPTH - 8, MAX_DEPTH + 4)), MAX_DEPTH - OUTSIDE
        text, holds = "not " * depth + "tokens > 100", lambda tokens, task: (tokens > 100) != (depth % 2 == 1)
    else:
        depth, deepest = draw(st.integers(MAX_DEPTH - 8, MAX_DEPTH + 4)), MAX_DEPTH - OUTSIDE
        text, holds = "-" * depth + "tokens < 0", lambda tokens, task: (-tokens if depth % 2 else tokens) < 0
    return text, _refused(f"deeper than {MAX_DEPTH}") if depth > deepest else _selects(holds)


@st.composite
def long_conditions(draw) -> tuple[str, Expected]:
    """Conditions a few characters either side of the length cap: a long sum, a long `and`, a long `or`."""
    shape, count = draw(st.sampled_from(["sum", "and", "or"])), draw(st.integers(0, 12))
    if shape == "sum":
        terms = (MAX_LENGTH - len(" < tokens") - 1) // 2 - 6 + count  # "1+1+...+1 < tokens"
        text, holds = "+".join(["1"] * terms) + " < tokens", lambda tokens, task: terms < tokens
    elif shape == "and":
        terms = (MAX_LENGTH + 5) // len("tokens > 20 and ") - 2 + count // 4
        text, holds = " and ".join(["tokens > 20"] * terms), lambda tokens, task: tokens > 20
    else:
        terms = (MAX_LENGTH + 4) // len("task == 'c' or ") - 2 + count // 4
        text, holds = " or ".join(["task == 'c'"] * (terms - 1) + ["task == 'b'"]), lambda tokens, task: task == "b"
    return text, _refused(f"at most {MAX_LENGTH}") if len(text) > MAX_LENGTH else _selects(holds)


@st.composite
def empty_lists(draw) -> tuple[str, Expected]:
    """`in []` holds nowhere and `not in []` everywhere, alone or beside another condition."""
    column, negated = draw(st.sampled_from(["tokens", "task"])), draw(st.booleans())
    joint = draw(st.sampled_from(["", " or tokens > 500", " and tokens > 500"]))
    text = f"{column} {'not in' if negated else 'in'} []{joint}"
    if joint.startswith(" or"):
        return text, _selects(lambda tokens, task: negated or tokens > 500)
    if joint:
        return text, _selects(lambda tokens, task: negated and tokens > 500)
    return text, _selects(lambda tokens, task: negated)


ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
EQUALITY = {"==": operator.eq, "!=": operator.ne}


@st.composite
def mixed_comparisons(draw) -> tuple[str, Expected]:
    """Chained comparisons whose operands are numbers, text, a number column and a text column: ordering text
    against a number is refused; equality between them holds nowhere (`!=` everywhere), as in Python."""
    operands = draw(st.lists(st.sampled_from(["tokens", "task", "100", "1e3", "'a'", "'b'", "'c'"]), min_size=2,
                             max_size=3))
    ops = draw(st.lists(st.sampled_from([*ORDERING, *EQUALITY]), min_size=len(operands) - 1,
                        max_size=len(operands) - 1))
    text = " ".join(part for pair in zip(operands, [*ops, ""]) for part in pair).strip()

    def value(operand, tokens, task):
        return tokens if operand == "tokens" else task if operand == "task" else (
            operand.strip("'") if operand.startswith("'") else float(operand))

    for op, left, right in zip(ops, operands, operands[1:]):
        if op in ORDERING and isinstance(value(left, 1.0, "a"), str) != isinstance(value(right, 1.0, "a"), str):
            return text, _refused("compares text with a number")
    return text, _selects(lambda tokens, task: all(
        {**ORDERING, **EQUALITY}[op](value(left, tokens, task), value(right, tokens, task))
        for op, left, right in zip(ops, operands, operands[1:])))


pathological = st.one_of(power_towers(), edge_literals(), deep_nesting(), long_conditions(), empty_lists(),
                         mixed_comparisons())


@pytest.fixture(scope="module")
def pathology(tmp_path_factory) -> Path:
    """A folder with the table of TOKENS and TASKS (and a one-valued column for --pool), the same rows as
    families and grades tables, and a paper folder whose figure and table read them."""
    root = tmp_path_factory.mktemp("pathology")
    rows = pd.DataFrame({"tokens": TOKENS, "task": TASKS, "loss": [1.5 + 4 * t ** -0.5 for t in TOKENS], "one": 1})
    rows.to_csv(root / "table.csv", index=False)
    (root / "data").mkdir()
    rows.assign(control="", split="id", family=TASKS, trained=True, step=[8, 16] * 4, answer_acc=0.5,
                chance=0.1).to_parquet(root / "data" / "families.parquet")
    rows.assign(cell_id="cell", split="id", step=8, answer_correct=[True, False, False] * 2 + [True, True],
                chance=0.1).to_parquet(root / "data" / "grades.parquet")
    (root / "paper").mkdir()
    return root


PATHOLOGY_FIT = ["fit", "table.csv", "--law", "power", "--x", "x=tokens"]


@settings(FUZZ, max_examples=150)
@given(case=pathological, flag=st.sampled_from(["--where", "--holdout"]))
def test_a_pathological_condition_is_refused_in_one_line_or_goes_on(case, flag, pathology):
    text, expected = case
    if flag == "--where":  # a valid condition goes on to the missing --y
        argv, goes_on = [*PATHOLOGY_FIT, "--y", "absent", "--where", text], "--y: no column 'absent'"
        if expected.named is None and not any(expected.rows):
            expected = _refused("selects no rows (of 8)")
    else:  # a valid condition goes on to --pool's one group, or to no rows left to fit
        argv = [*PATHOLOGY_FIT, "--y", "loss", "--by", "one", "--pool", "--holdout", text]
        goes_on = "0 rows to fit" if all(expected.rows) else "--pool needs at least two groups"
    line = assert_refused(argv, pathology)
    if expected.named is not None:
        assert flag in line and expected.named in line, (text, line)
    else:
        assert goes_on in line, (text, line)


@settings(FUZZ, max_examples=40)
@given(case=pathological, carrier=st.sampled_from(["figure", "table"]))
def test_a_pathological_figure_where_is_refused_in_one_line_or_draws_its_rows(case, carrier, pathology):
    """The condition is the `where` of an accuracy_by_family figure or of an accuracy_rows table's row; a valid
    one that selects rows draws, and the table counts the rows it selected."""
    text, expected = case
    where = f"where = {json.dumps(text)}\n"
    (pathology / "paper" / "figures.toml").write_text(
        '[[figure]]\nname = "by_family"\nkind = "accuracy_by_family"\nfamilies = "data/families.parquet"\n'
        + (where if carrier == "figure" else "")
        + '\n[[table]]\nname = "picked"\nkind = "accuracy_rows"\nsplits = { ID = "id" }\n'
        + f'rows = [{{ label = "picked", grades = "data/grades.parquet"{", " + where.strip() if carrier == "table" else ""} }}]\n')
    paper = ["figures", "--paper", str(pathology / "paper")]
    if expected.named is None and any(expected.rows):
        result = run_cli(paper, pathology)
        assert result.code == 0 and result.err == "", (text, result)
        counted = pd.read_csv(pathology / "paper" / "tables" / "picked.csv")["ID_n"].item()
        assert counted == (sum(expected.rows) if carrier == "table" else len(TOKENS)), (text, counted)
        assert (pathology / "paper" / "figures" / "by_family.png").is_file()
        return
    line = assert_refused(paper, pathology / "paper")
    named = "figure by_family: where " if carrier == "figure" else "table picked: row 1: where "
    assert named in line and (expected.named or "selects no rows (of 8)") in line, (text, line)


# --- special files and pathological patterns ---------------------------------------------------------
# A file a command reads must be a regular file: a FIFO, a device, a socket or a folder is refused by name before
# it is opened (a FIFO's reader blocks for a writer; /dev/zero never ends). An answer pattern that backtracks
# without end is refused within its time limit. Each case runs under a watchdog: a regression that blocks or
# spins (inside C code, where no Python signal handler runs) ends the test run with its traceback, never hangs it.


WATCHDOG_S = 120  # far beyond a refusal (a second or two); only a blocked or spinning command reaches it


@contextlib.contextmanager
def watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def specials(workdir) -> dict[str, Path]:
    """One of each kind of special file, by the words a refusal names it with."""
    folder = workdir / "specials"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock"))
    (folder / "dir").mkdir()
    yield {"a FIFO": folder / "pipe", "a character device": Path("/dev/zero"), "a socket": folder / "sock",
           "a folder": folder / "dir"}
    listener.close()


def special_file_commands(name: str, special: Path, work: Path) -> list[list[str]]:
    """Every command that reads a user's file, given the special file in its place (with what each needs written
    first: a spec naming it, a run folder or paper folder holding it)."""
    relative = os.path.relpath(special, work)
    (work / "source.toml").write_text(GRID.replace('families = ["add", "reverse"]\nood_families = ["sub"]',
                                                   f'source = "{relative}"\ngroups = ["add"]').replace(
                                      'splits = ["train", "id", "ood_family"]', 'splits = ["train", "id"]'))
    commands = [["data", "check", relative], ["run", relative, "--out", "new-run"],
                ["run", "source.toml", "--out", "new-run"], ["fit", relative, "--law", "power", "--y", "loss"]]
    if name != "a folder":  # a folder is what these expect: their files inside it are what is checked
        commands.append(["import-hf", relative, "--out", "model"])
    for holder, inside in (("paper", "figures.toml"), ("runfolder", "grid.toml")):
        (work / holder).mkdir(exist_ok=True)
        link = work / holder / inside
        link.unlink(missing_ok=True)
        link.symlink_to(special)  # a link to the special file: followed, then refused as what it points to
    return commands + [["figures", "--paper", "paper"], ["status", "runfolder"], ["collect", "runfolder"]]


@pytest.mark.parametrize("kind", ["a FIFO", "a character device", "a socket", "a folder"])
def test_a_special_file_is_refused_by_name_before_it_is_opened(kind, specials, workdir):
    commands = special_file_commands(kind, specials[kind], workdir)
    try:
        for argv in commands:
            with watchdog():
                line = refused(argv, workdir)
            assert f" is {kind}" in line, (argv, line)
    finally:
        for leftover in ("source.toml", "paper", "runfolder"):
            path = workdir / leftover
            if path.is_dir():
                for inside in path.iterdir():
                    inside.unlink()
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


# Repeated groups of overlapping alternatives over one character: each backtracks without end on a long run of it
# that the pattern cannot finish on, in Python's re and in the regex package alike.
BACKTRACKING = ["({c}|{c}{c})+{end}", "({c}{c}|{c})+{end}", "(({c}|{c}{c})+)+{end}", "({c}|{c}{{2}})+{end}",
                "({c}|{c}{c}){{2,}}{end}", "answer: ({c}|{c}{c})+{end}"]
# Nested quantifiers: Python's re spun on each; the regex package's engine answers most at once (graded), and any it
# cannot is refused like the shapes above: never spun.
NESTED = ["({c}+)+{end}", "({c}*)*{end}", "({c}|{c})*{end}", "(.*{c}){{8}}{end}", "({c}+{c}+)+{end}", "(\\w+\\s?)+{end}"]


@st.composite
def adversarial(draw, shapes: list[str]) -> tuple[str, str]:
    """(a pattern of one of the shapes, a completion that makes it backtrack)."""
    c = draw(st.sampled_from(["a", "7", "-", "_", "~", " ", "é"]))
    end = draw(st.sampled_from(["$", "b", "!x", "\\d{3}"]))
    return draw(st.sampled_from(shapes)).format(c=c, end=end), "answer: " + c * draw(st.integers(40, 80)) + "!"


def check_completion(work: Path, pattern: str, completion: str) -> tuple[list[str], Path]:
    lines = work / "completions.jsonl"
    lines.write_text(json.dumps({"family": "mine", "prompt": "q", "completion": completion, "answer": "1"}) + "\n")
    return ["data", "check", lines.name, "--answer-mode", "regex", "--answer-pattern", pattern], lines


@settings(FUZZ, max_examples=8)  # each waits out the time limit once
@given(case=adversarial(BACKTRACKING))
def test_a_backtracking_answer_pattern_is_refused_within_its_time_limit(case, workdir):
    argv, lines = check_completion(workdir, *case)
    try:
        with watchdog():
            line = refused(argv, workdir)
        assert f"answer pattern {case[0]!r} took longer than 1 s on a" in line  # a probe text, or line 1's completion
    finally:
        lines.unlink()


@settings(FUZZ, max_examples=12)
@given(case=adversarial(NESTED))
def test_a_nested_quantifier_answer_pattern_is_graded_or_refused_not_spun(case, workdir):
    argv, lines = check_completion(workdir, *case)
    try:
        with watchdog():
            result = run_cli(argv, workdir)
        refused_in_time = result.code == 2 and f"answer pattern {case[0]!r} took longer than 1 s" in result.err
        assert (result.code, result.err) == (0, "") or (refused_in_time and len(result.err.splitlines()) == 1), result
    finally:
        lines.unlink()


# --- signals at random moments -------------------------------------------------------------------------
# A signal needs a process of its own, which this file's in-process cases are not: SIGTERM and SIGHUP at
# drawn moments of every command that writes are tests/test_signals.py's property test (exit 143 in one
# line, every output as it was or complete, no temporary left). What the in-process entry point owes them:
# its handlers are in place only while a command runs, and the caller's come back, refused input included.

@settings(FUZZ, max_examples=20)
@given(argv=bad_options())
def test_the_entry_point_gives_the_callers_signal_handlers_back(argv, workdir):
    assume(all("\x00" not in item for item in argv))
    before = [signal.getsignal(signum) for signum in TERMINATING]
    refused(argv, workdir)
    assert [signal.getsignal(signum) for signum in TERMINATING] == before


# --- the arms after SFT ([rl], [rft]) --------------------------------------------------------------------
# Every value the issue names as bad (group size < 2, temperature <= 0, an arm without an SFT budget to start
# from, more prompts than a cell's training examples; RFT: an unknown schedule), drawn: one line naming the section,
# exit 2, nothing written.

@st.composite
def bad_arm_sections(draw) -> tuple[str, str]:
    arm = draw(st.sampled_from(["rl", "rft"]))
    start = f"[{arm}]\nbudgets = [0, 2]\n"
    case = draw(st.sampled_from(["group_size", "temperature", "from_budgets", "pool"] if arm == "rl"
                                else ["temperature", "from_budgets", "pool", "schedule"]))
    if case == "schedule":  # refused by RFTConfig's own check, before any work, named as the [rft] key
        name = draw(st.text("abcdefghijklmnopqrstuvwxyz_", max_size=12).filter(
            lambda text: text not in ("wsd", "cosine", "constant")))
        return arm, start + f'from_budgets = [8]\nschedule = "{name}"\n'
    if case == "group_size":
        return arm, start + f"from_budgets = [8]\ngroup_size = {draw(st.integers(-10**6, 1))}\n"
    if case == "temperature":
        value = draw(st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False), st.just(-math.inf)))
        return arm, start + f"from_budgets = [8]\ntemperature = {value!r}\n"
    if case == "from_budgets":
        budgets = draw(st.one_of(st.just(""), st.lists(st.integers(0, 10**6).filter(lambda b: b not in (8, 16, 32)),
                                                       min_size=1, max_size=3, unique=True).map(str)))
        return arm, start + (f"from_budgets = {budgets}\n" if budgets else "")
    key = "prompts_per_step" if arm == "rl" else "prompts"
    return arm, start + f"from_budgets = [8]\n{key} = {draw(st.integers(10**5, 10**6))}\n"


@settings(FUZZ, max_examples=25)
@given(case=bad_arm_sections())
def test_a_bad_arm_section_is_refused_in_one_line_naming_it(case, workdir):
    arm, section = case
    spec = workdir / "arm_grid.toml"
    spec.write_text(GRID + "\n" + section)
    try:
        line = refused(["run", "arm_grid.toml", "--out", "arm_run"], workdir)
        assert f"[{arm}]" in line, line
    finally:
        spec.unlink()
