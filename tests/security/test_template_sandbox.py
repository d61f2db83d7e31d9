"""A template cannot reach Python internals, the process or its environment, nor exhaust
memory: the sandbox refuses it, `nurture lint` reports it, and a run records the message
failed with a template error instead of sending it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.dispatcher import Dispatch, deliver
from nurture.program import Program, Sender, email, sms
from nurture.templates import MAX_OUTPUT_CHARS, TemplateProblem, TemplateSet

INTERNALS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ first_name.__class__.__base__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__ }}",
    "{{ first_name['__class__'] }}",
    "{{ first_name|attr('__class__') }}",
    "{{ first_name|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ '{0.__class__}'.format(first_name) }}",
    "{{ '{x.__class__}'.format_map({'x': first_name}) }}",
    "{% set c = first_name.__class__ %}{{ c }}",
    "{% for k in first_name.__dir__() %}{{ k }}{% endfor %}",
]
ENVIRONMENT = [
    "{{ os.environ }}",
    "{{ config }}",
    "{{ request.environ }}",
    "{{ environ['HOME'] }}",
    "{{ lipsum() }}",
    "{{ cycler('a') }}",
    "{% include '../secret.txt' %}",
    "{% include '../../../../../../../etc/passwd' %}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
]
EXHAUSTION = [
    "{{ 'a' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{{ 10 ** 100000000 }}",
    "{{ range(1000000000)|length }}",
    "{% for i in range(100000) %}{{ 'xxxxxxxxxx' }}{% endfor %}",
]
CONTEXT = {"first_name": "Anna", "contact_id": "C1"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "templates" / "demo" / "nudge" / "en").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("root:x:0:0")  # beside the templates, not in them
    return tmp_path / "templates"


def render_sms(root: Path, text: str):
    (root / "demo" / "nudge" / "en" / "sms.txt").write_text(text)
    return TemplateSet(root, "demo", "en").render("nudge", "sms", "en", CONTEXT)


@pytest.mark.parametrize("payload", INTERNALS)
@pytest.mark.parametrize("branch", ["taken", "never taken"])
def test_reaching_for_internals_is_refused_even_in_a_branch_never_taken(root, payload, branch):
    text = f"Hi {{{{ first_name }}}} {payload}"
    if branch == "never taken":
        text = f"Hi {{{{ first_name }}}}{{% if false %}}{payload}{{% endif %}}"
    with pytest.raises(TemplateProblem, match="unsafe") as refused:
        render_sms(root, text)
    assert "<class" not in str(refused.value) and "environ(" not in str(refused.value)


@pytest.mark.parametrize("payload", ENVIRONMENT)
def test_the_environment_and_files_are_out_of_reach(root, payload):
    with pytest.raises(TemplateProblem) as refused:
        render_sms(root, f"Hi {{{{ first_name }}}} {payload}")
    assert "root:x" not in str(refused.value)


@pytest.mark.parametrize("payload", EXHAUSTION)
def test_a_template_cannot_exhaust_memory(root, payload):
    with pytest.raises(TemplateProblem, match="over|more than|too big"):
        render_sms(root, payload)


def test_ordinary_arithmetic_and_loops_still_work(root):
    text = ("{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 3 * 4 }} {% for i in range(3) %}{{ loop.index }}"
            "{% endfor %} {{ ('x' * 100) | length }}")
    assert render_sms(root, text).text == "ababab 1024 12 123 100"
    big = "{% for i in range(1000) %}{{ 'x' * 100 }}{% endfor %}"
    assert len(render_sms(root, big).text) == 100_000 < MAX_OUTPUT_CHARS


class RecordingProvider:
    def __init__(self) -> None:
        self.sent: list = []

    def check(self) -> None:
        pass

    def send(self, message) -> str:
        self.sent.append(message)
        return f"id-{len(self.sent)}"


@pytest.mark.parametrize("payload", [INTERNALS[2], ENVIRONMENT[0], *EXHAUSTION])
def test_a_run_records_the_message_failed_with_a_template_error(root, payload):
    """dispatcher.deliver is what a send task runs for each claimed message."""
    program = Program(name="demo", audience="demo_audience",
                      steps=(sms("nudge", after=timedelta(0)), email("hello", after=timedelta(0))),
                      sender=Sender(email="hello@nurture.example", name="Nurture"))
    (root / "demo" / "nudge" / "en" / "sms.txt").write_text(f"Hi {{{{ first_name }}}} {payload}")
    provider = RecordingProvider()
    job = Dispatch(program=program, templates=TemplateSet(root, "demo", "en"),
                   email=provider, sms=provider)
    row = {"ledger_id": str(uuid.uuid4()), "contact_id": "C1", "enrollment_id": "E1",
           "channel": "sms", "step": "nudge", "locale": "en", "recipient": "+358401234567"}
    outcome = deliver(job, row, {**CONTEXT, "has_sms_consent": True})
    assert outcome.state == "failed"
    assert outcome.reason.startswith("template_error: ")
    assert provider.sent == []
