"""A checkpoint folder's tokenizer gives the ids `transformers` gives for the same folder, offline."""

import json
import os
import pickle

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: nothing may reach the hub

from checkpoint_folders import chatml_folder, llama3_folder, plain_folder  # noqa: E402

from scaling.trainer.batches import sequence_ids  # noqa: E402
from scaling.errors import UserError  # noqa: E402
from scaling.hf.checkpoint_tokenizer import checkpoint_tokenizer  # noqa: E402
from scaling.tasks.mixture import evaluation_split, training_pool  # noqa: E402


@pytest.fixture(scope="module")
def examples():
    pool = training_pool(("add", "reverse", "sort"), 3, 12, seed=1, cot="full")
    return pool + evaluation_split("ood_length", ("add", "reverse", "sort"), (), 6, seed=1, cot="short")


@pytest.fixture(scope="module")
def auto_tokenizer():
    from transformers import AutoTokenizer

    return lambda folder: AutoTokenizer.from_pretrained(str(folder))


def _user(example):
    return [{"role": "user", "content": example.prompt}]


def _conversation(example):
    return _user(example) + [{"role": "assistant", "content": example.completion}]


def _template_ids(reference, messages, **kwargs):
    return reference.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)


def test_chatml_prompt_and_answer_are_the_templates_turns_through_eos(tmp_path, examples, auto_tokenizer):
    folder = chatml_folder(tmp_path)
    ours, reference = checkpoint_tokenizer(folder), auto_tokenizer(folder)
    assert (ours.eos_id, ours.pad_id) == (reference.eos_token_id, reference.pad_token_id)
    newline = reference.encode("\n", add_special_tokens=False)
    for example in examples:
        prompt = _template_ids(reference, _user(example), add_generation_prompt=True)
        full = _template_ids(reference, _conversation(example))
        assert ours.prompt_ids(example) == prompt
        # The template closes the turn with <|im_end|> and a newline between turns: the answer stops at eos.
        assert full[-2:] == [ours.eos_id, *newline]
        assert sequence_ids(example, ours) == (full[:-1], len(prompt))
        assert ours.decode(ours.completion_ids(example)) == example.completion


def test_llama3_instruct_answer_is_the_whole_assistant_turn(tmp_path, examples, auto_tokenizer):
    folder = llama3_folder(tmp_path)
    ours, reference = checkpoint_tokenizer(folder), auto_tokenizer(folder)
    assert ours.chat_template.origin == str(folder / "chat_template.jinja")
    assert ours.eos_id == reference.eos_token_id and ours.pad_id == ours.eos_id  # no pad token: eos pads
    for example in examples:
        prompt = _template_ids(reference, _user(example), add_generation_prompt=True)
        assert prompt[0] == reference.bos_token_id  # written by the template, not added again
        assert ours.prompt_ids(example) == prompt
        assert sequence_ids(example, ours) == (_template_ids(reference, _conversation(example)), len(prompt))
        assert ours.decode(ours.completion_ids(example)) == example.completion


def test_a_base_model_whose_eos_is_not_the_end_of_turn_learns_the_turn_then_eos(tmp_path, examples, auto_tokenizer):
    folder = llama3_folder(tmp_path, eos="<|end_of_text|>")
    ours, reference = checkpoint_tokenizer(folder), auto_tokenizer(folder)
    for example in examples:
        full = _template_ids(reference, _conversation(example))
        assert sequence_ids(example, ours)[0] == full + [reference.eos_token_id]
        assert ours.decode(ours.completion_ids(example)) == example.completion  # <|eot_id|> is special: skipped


def test_without_a_template_a_prompt_is_bos_prompt_newline(tmp_path, examples, auto_tokenizer):
    folder = plain_folder(tmp_path)
    ours, reference = checkpoint_tokenizer(folder), auto_tokenizer(folder)
    assert ours.chat_template is None and ours.bos_ids == (reference.bos_token_id,)
    for example in examples:
        assert ours.prompt_ids(example) == reference(example.prompt + "\n")["input_ids"]  # bos from the post-processor
        completion = reference.encode(example.completion, add_special_tokens=False) + [reference.eos_token_id]
        assert ours.completion_ids(example) == completion


def test_add_bos_token_adds_bos_when_the_post_processor_does_not(tmp_path, examples):
    ours = checkpoint_tokenizer(plain_folder(tmp_path, post_processor_bos=False))
    bos = ours.tokenizer.token_to_id("<s>")
    assert ours.bos_ids == (bos,)
    assert ours.prompt_ids(examples[0]) == [bos, *ours.encode(examples[0].prompt + "\n")]


def test_a_template_may_come_as_a_named_list_and_tokens_from_special_tokens_map(tmp_path, examples, auto_tokenizer):
    folder = chatml_folder(tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = config.pop("chat_template")
    config["chat_template"] = [{"name": "tool_use", "template": "{{ raise_exception('not this one') }}"},
                               {"name": "default", "template": template}]
    special_map = {name: config.pop(name) for name in ("eos_token", "pad_token")}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map))
    ours, reference = checkpoint_tokenizer(folder), auto_tokenizer(folder)
    assert (ours.eos_id, ours.pad_id) == (reference.eos_token_id, reference.pad_token_id)
    assert ours.prompt_ids(examples[0]) == _template_ids(reference, _user(examples[0]), add_generation_prompt=True)


def test_generation_config_gives_eos_when_no_file_names_it(tmp_path):
    folder = plain_folder(tmp_path)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    assert checkpoint_tokenizer(folder).eos_id == 2


def test_tokenizers_are_equal_by_content_and_survive_pickling(tmp_path, examples):
    first, again = checkpoint_tokenizer(chatml_folder(tmp_path / "a")), checkpoint_tokenizer(chatml_folder(tmp_path / "b"))
    assert first == again and hash(first) == hash(again)
    assert first != checkpoint_tokenizer(llama3_folder(tmp_path / "c"))
    copy = pickle.loads(pickle.dumps(first))
    assert copy == first and copy.prompt_ids(examples[0]) == first.prompt_ids(examples[0])


@pytest.mark.parametrize("file, content, message", [
    ("tokenizer.json", None, "tokenizer.json does not exist"),
    ("tokenizer.json", "{broken", "tokenizer.json is malformed"),
    ("tokenizer_config.json", "{broken", "tokenizer_config.json is malformed JSON"),
    ("tokenizer_config.json", "[]", "tokenizer_config.json must hold a JSON object"),
    ("tokenizer_config.json", '{"eos_token": "</s>", "chat_template": 3}', "chat_template must be a string or a list"),
    ("tokenizer_config.json", '{"eos_token": "</s>", "chat_template": [{"name": "x", "template": "y"}]}',
     'lists no "default" template'),
    ("tokenizer_config.json", '{"eos_token": "</nope>"}', "eos_token '</nope>' is not a token of tokenizer.json"),
    ("tokenizer_config.json", '{"eos_token": 5}', "eos_token must be a string or an object"),
    ("tokenizer_config.json", "{}", "no end-of-sequence token"),
    ("chat_template.jinja", "{% for m in messages %}", "chat_template.jinja is not a valid Jinja template"),
    ("chat_template.jinja", "{{ raise_exception('roles must alternate') }}", "failed to render: roles must alternate"),
    ("chat_template.jinja", "{{ messages[0].content }}", "renders no prompt or no answer"),
])
def test_problems_are_one_line_user_errors_naming_the_file(tmp_path, file, content, message):
    folder = plain_folder(tmp_path)
    if content is None:
        (folder / file).unlink()
    else:
        (folder / file).write_text(content)
    with pytest.raises(UserError, match=message) as caught:
        checkpoint_tokenizer(folder)
    assert "\n" not in str(caught.value) and (file in str(caught.value) or str(folder) in str(caught.value))
