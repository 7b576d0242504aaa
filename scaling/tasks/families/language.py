"""Language families: templated multi-step word problems, transitive comparisons."""

from __future__ import annotations

import functools
import math
from typing import Iterator, Sequence

import numpy as np

from scaling.tasks.families.base import NUMBER, Family, Fields


def _uniforms(rng: np.random.Generator, n: int) -> Iterator[float]:
    # One generator call per problem: a call costs about as much as building the whole prompt.
    return iter(rng.random(n).tolist())


def _pick(options: Sequence, u: float):
    return options[int(u * len(options))]  # u < 1 keeps u * n below n in floating point too


# Cached because every step of a problem reads the same prompt text again.
@functools.lru_cache(maxsize=1024)
def _sentences(text: str) -> tuple[tuple[str, ...], ...]:
    """The words of each sentence of `A b c. D e f.` (the field regexes guarantee this shape)."""
    return tuple(tuple(sentence.split(" ")) for sentence in text[:-1].split(". "))


# word: one step per event, `t<op>=v`, t the running total read from the previous step's result
# (the start for the first step). A share that a corrupted total leaves inexact cannot be
# continued in whole items, so it is unreadable (ValueError) rather than rounded.
_PEOPLE = (("Tom", "he"), ("Sam", "he"), ("Ben", "he"), ("Leo", "he"), ("Max", "he"),
           ("Ann", "she"), ("Eva", "she"), ("Mia", "she"), ("Zoe", "she"), ("Ivy", "she"))
_ITEMS = ("apples", "pears", "plums", "eggs", "nuts", "figs", "buns", "cakes")
_EVENT = (
    r"(?:He|She) (?:buys \d+ bags of \d+|finds \d+ more|gives \d+ away|eats \d+|doubles them"
    r"|shares them equally with (?:1 friend|\d+ friends))\."
)
_MOST_TO_DOUBLE = 50  # keeps totals within a few digits however many events there are


def _draw_event(total: int, uniforms: Iterator[float]) -> tuple[str, int]:
    """One event sentence (its subject left as `{}`) that keeps the total a whole, non-negative count."""
    divisors = [k for k in (2, 3, 4) if total % k == 0] if total else []
    verbs = ["buys", "finds"]
    verbs += ["gives", "eats"] if total else []
    verbs += ["doubles"] if 0 < total <= _MOST_TO_DOUBLE else []
    verbs += ["shares"] if divisors else []
    verb = _pick(verbs, next(uniforms))
    if verb == "buys":
        bags, per_bag = _pick(range(2, 6), next(uniforms)), _pick(range(2, 10), next(uniforms))
        return f"{{}} buys {bags} bags of {per_bag}.", total + bags * per_bag
    if verb == "finds":
        found = _pick(range(2, 13), next(uniforms))
        return f"{{}} finds {found} more.", total + found
    if verb in ("gives", "eats"):
        lost = _pick(range(1, min(total, 12) + 1), next(uniforms))
        return (f"{{}} gives {lost} away." if verb == "gives" else f"{{}} eats {lost}."), total - lost
    if verb == "doubles":
        return "{} doubles them.", 2 * total
    shares = _pick(divisors, next(uniforms))
    friends = f"{shares - 1} friend" + ("s" if shares > 2 else "")
    return f"{{}} shares them equally with {friends}.", total // shares


def _draw_word(rng: np.random.Generator, n_events: int) -> Fields:
    uniforms = _uniforms(rng, 3 + 3 * n_events)
    name, pronoun = _pick(_PEOPLE, next(uniforms))
    item, start = _pick(_ITEMS, next(uniforms)), _pick(range(2, 21), next(uniforms))
    subject, total, sentences = pronoun.capitalize(), start, []
    for _ in range(n_events):
        sentence, total = _draw_event(total, uniforms)
        sentences.append(sentence.format(subject))
    return {"name": name, "start": str(start), "item": item, "events": " ".join(sentences), "pron": pronoun}


def _operation(words: Sequence[str]) -> str:
    """What an event sentence does to the total, as the step writes it after the total: `+3*4`, `+5`, `-2`,
    `*2` or `/3`. Eating and giving away are one operation, whoever does it to whichever items."""
    verb = words[1]
    if verb == "buys":
        return f"+{int(words[2])}*{int(words[5])}"
    if verb == "finds":
        return f"+{int(words[2])}"
    if verb in ("gives", "eats"):
        return f"-{int(words[2])}"
    if verb == "doubles":
        return "*2"
    return f"/{int(words[5]) + 1}"  # the friends and the sharer


def _word_next(fields: Fields, previous: Sequence[str]) -> str:
    t = int(previous[-1].rsplit("=", 1)[1]) if previous else int(fields["start"])
    operation = _operation(_sentences(fields["events"])[len(previous)])
    if operation[0] == "/" and t % int(operation[1:]):
        raise ValueError(f"{t} cannot be shared equally by {operation[1:]}")
    return f"{t}{operation}={_apply(t, operation)}"


def _apply(total: int, operation: str) -> int:
    sign, rest = operation[0], operation[1:]
    if sign == "+":
        return total + math.prod(int(factor) for factor in rest.split("*"))
    if sign == "-":
        return total - int(rest)
    return total * int(rest) if sign == "*" else total // int(rest)


def _word_canonical(fields: Fields) -> str:
    """The start and the operations in order: the arithmetic alone, whoever owns which items and whichever
    verb says it (`eats 12` and `gives 12 away` are both -12)."""
    return f"{int(fields['start'])}|" + ",".join(_operation(words) for words in _sentences(fields["events"]))


WORD = Family(
    name="word",
    kind="language",
    description="a templated multi-step word problem, one event applied to the running total per step",
    id_range=(1, 3),
    ood_range=(4, 6),
    phrasings=(
        "{name} has {start} {item}. {events} How many does {pron} have now?",
        "{name} starts with {start} {item}. {events} How many does {pron} end up with?",
        "There are {start} {item} in {name}'s bag. {events} How many does {pron} have in the end?",
    ),
    field_patterns=(
        ("name", r"[A-Z][a-z]+"),
        ("start", NUMBER),
        ("item", r"[a-z]+"),
        ("events", rf"{_EVENT}(?: {_EVENT})*"),
        ("pron", r"he|she"),
    ),
    draw_fields=_draw_word,
    n_steps=lambda fields: fields["events"].count("."),
    next_step=_word_next,
    final_answer=lambda fields, steps: steps[-1].rsplit("=", 1)[1],
    canonical=_word_canonical,
    skills=("word",),
)


# compare: step i is `i A>B`, the chain walked one hop down from the taller (older, ...) of the two
# asked about: B is the one just below the previous step's B, and i the previous counter plus one.
# Names are letters, so the counter is what gives every step the digit that corruption changes.
_RELATIONS = (("taller", "shorter"), ("older", "younger"), ("faster", "slower"), ("heavier", "lighter"))
_IS_MORE = {word: index == 0 for pair in _RELATIONS for index, word in enumerate(pair)}
_NAMES = ("Ann", "Bob", "Cid", "Dan", "Eve", "Fay", "Gus", "Hal", "Ida", "Jon", "Kim",
          "Lea", "Ned", "Oli", "Pam", "Rex", "Sue", "Tia", "Uma", "Val", "Wes", "Yan")
_RELATION = "|".join(_IS_MORE)
_FACT = rf"[A-Z][a-z]+ is (?:{_RELATION}) than [A-Z][a-z]+\."


def _shuffled(items: list, uniforms: Iterator[float], n: int) -> list:
    """The first n items of a uniform random permutation (Fisher-Yates, one uniform per item)."""
    items, size = list(items), len(items)
    for i in range(n):
        j = i + int(next(uniforms) * (size - i))
        items[i], items[j] = items[j], items[i]
    return items[:n]


def _draw_compare(rng: np.random.Generator, hops: int) -> Fields:
    """A chain of `hops` facts between the two asked about, at most one distractor fact, shuffled."""
    uniforms = _uniforms(rng, 3 * hops + 11)  # people, distractor, wordings, question, order: at most this many
    people = _shuffled(_NAMES, uniforms, hops + 3)
    chain, spare = people[: hops + 1], people[hops + 1 :]
    edges = list(zip(chain, chain[1:]))  # (more, less)
    # Half the problems get a distractor above the chain, below it or apart from it, so the walk
    # must start at the right one of the two asked about and stop at the other.
    distractors = (((spare[0], chain[0]),), ((chain[-1], spare[0]),), ((spare[0], spare[1]),))
    distractor = () if next(uniforms) < 0.5 else _pick(distractors, next(uniforms))
    more, less = _pick(_RELATIONS, next(uniforms))
    facts = [
        f"{upper} is {more} than {lower}." if next(uniforms) < 0.5 else f"{lower} is {less} than {upper}."
        for upper, lower in edges + list(distractor)
    ]
    asked = (chain[0], chain[-1]) if next(uniforms) < 0.5 else (chain[-1], chain[0])
    return {
        "facts": " ".join(_shuffled(facts, uniforms, len(facts))),
        "first": asked[0],
        "relation": _pick((more, less), next(uniforms)),
        "second": asked[1],
    }


@functools.lru_cache(maxsize=1024)
def _below(facts: str) -> dict[str, str]:
    """Who is just below whom in the relation's `more` direction (cached: callers must not mutate it)."""
    below = {}
    for subject, _, relation, _, other in _sentences(facts):
        upper, lower = (subject, other) if _IS_MORE[relation] else (other, subject)
        below[upper] = lower
    return below


def _chain_top_and_hops(fields: Fields) -> tuple[str, int]:
    below = _below(fields["facts"])
    for top, bottom in ((fields["first"], fields["second"]), (fields["second"], fields["first"])):
        person, hops = top, 0
        while person in below and person != bottom and hops < len(below):  # bounded: facts may loop
            person, hops = below[person], hops + 1
        if person == bottom and hops:
            return top, hops
    raise ValueError(f"the facts link no chain between {fields['first']} and {fields['second']}")


def _compare_next(fields: Fields, previous: Sequence[str]) -> str:
    if not previous:
        top = _chain_top_and_hops(fields)[0]
        return f"1 {top}>{_below(fields['facts'])[top]}"
    counter, pair = previous[-1].split(" ")
    upper, lower = pair.split(">")
    return f"{int(counter) + 1} {upper}>{_below(fields['facts'])[lower]}"


def _compare_answer(fields: Fields, steps: Sequence[str]) -> str:
    upper, lower = steps[-1].split(" ")[1].split(">")
    claim = (fields["first"], fields["second"])
    if not _IS_MORE[fields["relation"]]:
        claim = claim[::-1]
    if (upper, lower) not in (claim, claim[::-1]):
        raise ValueError(f"the last step {steps[-1]!r} does not relate the two asked about")
    return "yes" if (upper, lower) == claim else "no"


def _compare_canonical(fields: Fields) -> str:
    """The facts as `upper>lower` edges, sorted, and the question as the claim it makes: the same problem
    whichever wording (taller / shorter) and order the facts and question are written in."""
    pair = next(p for p in _RELATIONS if fields["relation"] in p)
    edges = sorted(f"{upper}>{lower}" for upper, lower in _below(fields["facts"]).items())
    first, second = fields["first"], fields["second"]
    claim = f"{first}>{second}" if _IS_MORE[fields["relation"]] else f"{second}>{first}"
    return f"{pair[0]}|{','.join(edges)}|{claim}"


COMPARE = Family(
    name="compare",
    kind="language",
    description="transitive comparison: walk the chain of facts one hop per step, then answer yes or no",
    id_range=(1, 3),
    ood_range=(4, 6),
    phrasings=(
        "{facts} Is {first} {relation} than {second}?",
        "{facts} Question: is {first} {relation} than {second}?",
        "{facts} So is {first} {relation} than {second}?",
    ),
    field_patterns=(
        ("facts", rf"{_FACT}(?: {_FACT})*"),
        ("first", r"[A-Z][a-z]+"),
        ("relation", _RELATION),
        ("second", r"[A-Z][a-z]+"),
    ),
    draw_fields=_draw_compare,
    n_steps=lambda fields: _chain_top_and_hops(fields)[1],
    next_step=_compare_next,
    final_answer=_compare_answer,
    canonical=_compare_canonical,
    skills=("compare",),
)

FAMILIES = (WORD, COMPARE)
