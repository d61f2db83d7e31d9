"""Message templates: `include/templates/<program>/<template>/<locale>/`.

Email: `subject.txt`, `body.txt` and `body.html` (autoescaped); SMS: `sms.txt`. Templates
render in Jinja2's sandbox with undefined variables an error, so a contact missing a field
the template needs gets no half-filled message: the dispatcher records a template error for
that contact alone. A contact's locale falls back from `fi-FI` to `fi` to the program's
default locale.

A template cannot reach Python internals or the process: the sandbox refuses private and
internal attributes at render time, and `Sandbox` refuses to load a template that so much
as names one (`''.__class__`, `x['__globals__']`, `x|attr('_y')`), even in a branch no
contact takes, so such a template fails `nurture lint` and never renders in a run. There is
no `os`, `config` or `request` in a template's context; Jinja's `lipsum`, `cycler` and
`joiner` helpers (the usual way to a function's globals) are removed; `*` and `**` may not
build huge strings or numbers, and a part may not render past `MAX_OUTPUT_CHARS`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from nurture.program import Channel

EMAIL_PARTS = ("subject.txt", "body.txt", "body.html")
SMS_PARTS = ("sms.txt",)
MAX_OUTPUT_CHARS = 500_000  # per part: far past any mail client's clipping
MAX_REPEAT = 100_000  # items a template's `*` may make: 'ab' * n, [x] * n
MAX_POWER_BITS = 4_096  # bits a template's `**` may make
_DUNDER = re.compile(r"__\w+__")


class TemplateProblem(Exception):
    """A template is missing or failed to render for one contact."""


@dataclass(frozen=True)
class Rendered:
    parts: dict[str, str]  # file name -> rendered text
    version: str
    locale: str

    @property
    def subject(self) -> str:
        return self.parts["subject.txt"].strip()

    @property
    def text(self) -> str:
        return self.parts["body.txt"] if "body.txt" in self.parts else self.parts["sms.txt"].strip()

    @property
    def html(self) -> str | None:
        return self.parts.get("body.html")


class TemplateSet:
    """The templates of one program."""

    def __init__(self, root: Path, program: str, default_locale: str) -> None:
        self.root = root
        self.program = program
        self.default_locale = default_locale

    @cached_property
    def env(self):
        from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape

        return sandbox()(
            loader=FileSystemLoader(self.root),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def resolve_locale(self, template: str, locale: str) -> str:
        language = locale.split("-")[0]
        for candidate in dict.fromkeys((locale, language, self.default_locale)):
            if (self.root / self.program / template / candidate).is_dir():
                return candidate
        raise TemplateProblem(
            f"no templates for {self.program}/{template} in {locale} or {self.default_locale}"
        )

    def render(self, template: str, channel: Channel, locale: str,
               context: dict[str, Any]) -> Rendered:
        from jinja2 import TemplateError

        chosen = self.resolve_locale(template, locale)
        folder = f"{self.program}/{template}/{chosen}"
        parts = {}
        try:
            for name in EMAIL_PARTS if channel == "email" else SMS_PARTS:
                parts[name] = _render_capped(self.env.get_template(f"{folder}/{name}"),
                                             context)
        except (TemplateError, OverflowError) as err:  # OverflowError: the sandbox's range()
            raise TemplateProblem(f"{folder}/{name}: {err}") from err
        return Rendered(parts=parts, version=self.version(template, chosen), locale=chosen)

    def version(self, template: str, locale: str) -> str:
        """A short hash of the sources used (layouts included), stored with each send."""
        return _hash_sources(self.root, self.program, template, locale)


def _render_capped(template, context: dict[str, Any]) -> str:
    from jinja2.exceptions import SecurityError

    chunks, size = [], 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"renders more than {MAX_OUTPUT_CHARS:,} characters")
        chunks.append(chunk)
    return "".join(chunks)


def unsafe_constructs(tree) -> list[str]:
    """What in a parsed template reaches for Python internals, each with its line."""
    from jinja2 import nodes

    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Const)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            found.append(f"attribute {node.attr!r} (line {node.lineno})")
        elif (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
              and isinstance(node.arg.value, str) and node.arg.value.startswith("_")):
            found.append(f"item {node.arg.value!r} (line {node.lineno})")
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            found.append(f"the attr filter (line {node.lineno})")
        elif (isinstance(node, nodes.Const) and isinstance(node.value, str)
              and _DUNDER.search(node.value)):
            found.append(f"string {node.value!r} (line {node.lineno})")
    return found


@cache
def sandbox():
    """Jinja's immutable sandbox, refusing to load a template with an unsafe construct, and
    bounding what `*` and `**` make. A class made on first use: jinja2 loads lazily."""
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            for helper in ("lipsum", "cycler", "joiner"):
                self.globals.pop(helper, None)

        def _parse(self, source, name, filename):
            tree = super()._parse(source, name, filename)
            found = unsafe_constructs(tree)
            if found:
                raise SecurityError(f"unsafe template: it reaches for {', '.join(found)}")
            return tree

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for items, times in ((left, right), (right, left)):
                    if (isinstance(items, str | list | tuple) and isinstance(times, int)
                            and len(items) * times > MAX_REPEAT):
                        raise SecurityError(f"'*' would make more than {MAX_REPEAT:,} items")
            elif (isinstance(left, int) and isinstance(right, int) and right > 0
                  and abs(left) > 1 and left.bit_length() * right > MAX_POWER_BITS):
                raise SecurityError(f"'**' would make a number over {MAX_POWER_BITS} bits")
            return super().call_binop(context, operator, left, right)

    return Sandbox


def _hash_sources(root: Path, program: str, template: str, locale: str) -> str:
    digest = hashlib.sha256()
    files = sorted((root / program / template / locale).glob("*"))
    files += sorted((root / "_layouts").glob("*"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
