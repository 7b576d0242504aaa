from scaling.tasks.families import completion_text, get_family
from scaling.tasks.grader import grade, parse_completion

PROMPT = "what is 57 plus 68?"


def test_the_reference_completion_is_fully_correct():
    problem = get_family("add").solve(PROMPT)
    result = grade("add", PROMPT, completion_text(problem.steps, problem.answer))
    assert result.answer_correct and result.process_acc == 1.0


def test_a_wrong_step_lowers_process_accuracy_only():
    result = grade("add", PROMPT, "7+8+0=15\n5+6+1=13\n#### 125")
    assert result.answer_correct and result.process_acc == 0.5


def test_missing_or_extra_steps_count_against_the_longer_list():
    assert grade("add", PROMPT, "7+8+0=15\n#### 125").process_acc == 0.5
    assert grade("add", PROMPT, "7+8+0=15\n5+6+1=12\n0+0+1=1\n#### 125").process_acc == 2 / 3


def test_unparseable_output_is_wrong_not_an_error():
    for text in ("", "####", "garbage without a mark", "\n\n#### \n"):
        result = grade("add", PROMPT, text)
        assert not result.answer_correct and result.process_acc == 0.0  # no step verified of the gold two


def test_parse_takes_the_first_line_after_the_mark():
    assert parse_completion("a\nb\n#### 12\nmore") == (["a", "b"], "12")
    assert parse_completion("no answer") == (["no answer"], None)


def test_a_step_that_follows_from_an_earlier_mistake_earns_no_credit():
    # 57+68: the first column is 7+8+0=15. Written as 14, its carry (1) still makes `5+6+1=12` follow,
    # which a step-by-step verifier would accept; the chain went wrong before it, so it counts for nothing.
    assert grade("add", "57+68=?", "7+8+0=14\n5+6+1=12\n#### 124").process_acc == 0.0
    right = grade("add", "57+68=?", "7+8+0=15\n5+6+1=12\n#### 125")
    assert right.process_acc == 1.0 and right.chain_correct and right.answer_correct and right.steps == 2


def test_the_chain_is_correct_only_when_every_step_is_there_and_right():
    assert not grade("add", "57+68=?", "7+8+0=15\n#### 125").chain_correct  # a step missing, the answer right
    assert not grade("add", "57+68=?", "7+8+0=15\n5+6+1=12\n0+0+1=1\n#### 125").chain_correct  # one too many
    assert grade("add", "57+68=?", "7+8+0=15\n5+6+1=12\n#### 99").chain_correct  # the chain, whatever the answer
