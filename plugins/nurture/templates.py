"""Message templates: `include/templates/<program>/<template>/<locale>/`.

Email: `subject.txt`, `body.txt` and `body.html` (autoescaped); SMS: `sms.txt`. Templates
render in Jinja2's sandbox with undefined variables an error, so a template cannot reach
Python internals and a contact missing a field the template needs gets no half-filled
message: the dispatcher records a template error for that contact alone. A contact's locale
falls back from `fi-FI` to `fi` to the program's default locale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from nurture.program import Channel

EMAIL_PARTS = ("subject.txt", "body.txt", "body.html")
SMS_PARTS = ("sms.txt",)


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
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        return ImmutableSandboxedEnvironment(
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
                parts[name] = self.env.get_template(f"{folder}/{name}").render(context)
        except TemplateError as err:
            raise TemplateProblem(f"{folder}/{name}: {err}") from err
        return Rendered(parts=parts, version=self.version(template, chosen), locale=chosen)

    def version(self, template: str, locale: str) -> str:
        """A short hash of the sources used (layouts included), stored with each send."""
        return _hash_sources(self.root, self.program, template, locale)


def _hash_sources(root: Path, program: str, template: str, locale: str) -> str:
    digest = hashlib.sha256()
    files = sorted((root / program / template / locale).glob("*"))
    files += sorted((root / "_layouts").glob("*"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
