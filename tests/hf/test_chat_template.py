"""Chat templates render exactly as transformers renders them, in the same sandbox."""

import pickle

import pytest

from scaling.errors import UserError
from scaling.hf.chat_template import ChatTemplate

VARIABLES = (("bos_token", "<s>"), ("eos_token", "</s>"))
MESSAGES = [{"role": "user", "content": "what is <1> & \"2\"?  "}, {"role": "assistant", "content": "ünïcode\n#### 3"}]
# Whitespace control, loop controls, namespace, tojson, dict, strftime_now, generation blocks, tools/documents.
FEATURES = """{{ bos_token }}
{%- set ns = namespace(turns=0) %}
{%- for message in messages %}
    {%- if loop.index0 > 5 %}{% break %}{% endif %}
    {%- set ns.turns = ns.turns + 1 %}
    {% if message.role == 'assistant' %}
    {% generation %}{{ message.content | tojson }}{% endgeneration %}{{ eos_token }}
    {% else %}
    [{{ message.role }}] {{ message.content | trim }} {{ dict(a=1) | tojson }}
    {% endif %}
{%- endfor %}
{{ ns.turns }} {{ tools is none }} {{ documents is none }} {{ strftime_now('%Y') | length }}
{%- if add_generation_prompt %}<assistant>{% endif %}"""


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("messages", [MESSAGES[:1], MESSAGES])
def test_rendering_equals_transformers(messages, add_generation_prompt):
    from transformers.utils.chat_template_utils import render_jinja_template

    (expected,), _ = render_jinja_template(conversations=[messages], chat_template=FEATURES,
                                           add_generation_prompt=add_generation_prompt, **dict(VARIABLES))
    ours = ChatTemplate(FEATURES, VARIABLES).render(messages, add_generation_prompt=add_generation_prompt)
    assert ours == expected


@pytest.mark.parametrize("source, message", [
    ("{{ raise_exception('only user and assistant roles') }}", "failed to render: only user and assistant roles"),
    ("{{ ''.__class__.__mro__ }}", "failed to render"),  # the sandbox refuses Python internals
    ("{% set ns = namespace() %}{% set ns._x = 1 %}", "failed to render"),
    ("{{ messages.append(1) }}", "failed to render"),  # immutable: a template cannot change its inputs
    ("{{ 1 + 'a' }}", "failed to render: TypeError"),
])
def test_a_failing_template_is_a_user_error_naming_its_origin(source, message):
    template = ChatTemplate(source, origin="ckpt/chat_template.jinja")
    with pytest.raises(UserError, match=message) as caught:
        template.render(MESSAGES, add_generation_prompt=True)
    assert str(caught.value).startswith("ckpt/chat_template.jinja") and "\n" not in str(caught.value)


def test_a_syntax_error_fails_when_the_template_is_made():
    with pytest.raises(UserError, match="ckpt/x.jinja is not a valid Jinja template"):
        ChatTemplate("{% if x %}", origin="ckpt/x.jinja")


def test_templates_are_equal_by_source_and_variables_and_pickle():
    template = ChatTemplate(FEATURES, VARIABLES, origin="a")
    assert template == ChatTemplate(FEATURES, VARIABLES, origin="b") != ChatTemplate(FEATURES, ())
    assert pickle.loads(pickle.dumps(template)).render(MESSAGES, True) == template.render(MESSAGES, True)
