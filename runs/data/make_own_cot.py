"""Writes runs/data/own_cot.jsonl: a small chain-of-thought dataset in the shape people fine-tune on, for
`runs/own-data.toml` and the README's "Your own data".

Most rows are the synthetic tasks as a user would hold them: chat messages, a `category` field, and a
`verified` flag that is false where the CoT holds an error (30% of the trained categories' rows). A few rows are hand-written in
another style (prompt/completion pairs, prose steps). `sum3` (three numbers added as two additions) is
never trained: it is the held-out category a model can reach from `add`.

    .venv/bin/python runs/data/make_own_cot.py    # deterministic: the same file every time
"""

import json
from pathlib import Path

from scaling.tasks.mixture import sample

OUT = Path(__file__).with_name("own_cot.jsonl")
ROWS = {"add": 600, "reverse": 600, "sort": 600, "sum3": 120}  # sum3 is held out of every mixture
HELD_OUT = {"sum3"}  # evaluated only, so all its rows are correct

# Written by hand: another phrasing and prose steps, as rows from a second source would look.
HAND_WRITTEN = [
    ("Tom has 12 apples and buys 30 more. How many apples does he have?", "He starts with 12.\n12 + 30 = 42.\n#### 42", "add"),
    ("A shelf holds 25 books; 17 more are added. How many books are on it?", "25 books to begin.\n25 + 17 = 42.\n#### 42", "add"),
    ("What do 8 and 5 make together?", "Put 8 and 5 together.\n8 + 5 = 13.\n#### 13", "add"),
    ("Add 301 to 99.", "Line them up by place.\n301 + 99 = 400.\n#### 400", "add"),
    ("Write the digits 4 1 7 backwards.", "Last first: 7, then 1, then 4.\n#### 7 1 4", "reverse"),
    ("Read 9 0 2 5 from right to left.", "From the right: 5, 2, 0, 9.\n#### 5 2 0 9", "reverse"),
    ("Put 3 9 1 in increasing order.", "The smallest is 1, then 3, then 9.\n#### 1 3 9", "sort"),
    ("Order these from low to high: 8 2 6 2.", "2 and 2 come first, then 6, then 8.\n#### 2 2 6 8", "sort"),
]


def rows() -> list[dict]:
    out = []
    for family, n in ROWS.items():
        for example in sample(family, "train", n, seed=11, quality=1.0 if family in HELD_OUT else 0.7):
            out.append({"messages": [{"role": "user", "content": example.prompt},
                                     {"role": "assistant", "content": example.completion}],
                        "category": family, "verified": not example.corrupted})
    out += [{"prompt": prompt, "completion": completion, "category": category, "verified": True, "source": "hand-written"}
            for prompt, completion, category in HAND_WRITTEN]
    return out


if __name__ == "__main__":
    OUT.write_text("".join(json.dumps(row) + "\n" for row in rows()))
    print(f"wrote {OUT} ({len(rows())} rows)")
