"""Judge prompt templates: the card's, verbatim, and a corrected default (replies are read by `mixnu.eval.parse`).

A template file is plain text: a first line `system: …`, a line `user:`, then the user message.
Placeholders are replaced in one pass (so a response that happens to contain `{Prompt}` is left alone):

| placeholder | becomes |
|---|---|
| `{Prompt}` | the prompt text |
| `{Response from Model X}` | the response shown as letter X (the card's form) |
| `{Responses}` | every response as `<X>\\n…\\n</X>` blocks, one per shown model |
| `{N}` | how many models are shown ("three") |
| `{Letters}` | the letters shown ("A, B, and C") |
| `{Notes}` | the suite's notes for the judge |
| `{JsonExample}` | the expected JSON answer, for the shown letters |

`card` is the card's template byte for byte ("three generative models" but A–E: it needs exactly five
models). `default` counts and lists the models actually shown and asks for JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mixnu.errors import ConfigError
from mixnu.eval.criteria import CRITERIA
from mixnu.text import normalize_text

BUILTIN = ("default", "card")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_PLACEHOLDER = re.compile(r"\{(Prompt|Responses|N|Letters|Notes|JsonExample|Response from Model ([A-Z]))\}")


@dataclass(frozen=True)
class Template:
    """A judge template: its name, the system and user text, and a content hash (part of judgment keys)."""

    name: str
    system: str
    user: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(f"{self.system}\n\x00\n{self.user}".encode()).hexdigest()

    @property
    def fixed_letters(self) -> tuple[str, ...]:
        """Letters of `{Response from Model X}` slots (the card's A–E); empty if it uses `{Responses}`."""
        return tuple(m.group(2) for m in _PLACEHOLDER.finditer(self.user) if m.group(2))


def builtin_template_text(name: str) -> str:
    """The raw text of a shipped template (`default` or `card`)."""
    return (resources.files("mixnu") / "_data" / "judge" / f"{name}.txt").read_text(encoding="utf-8")


def parse_template_text(text: str, name: str) -> Template:
    """Split `system: …` / `user:` text into a `Template`; `ConfigError` if the shape is wrong."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("system:"):
        raise ConfigError(f"template {name}: the first line must start with 'system:'")
    try:
        user_at = next(i for i, ln in enumerate(lines) if ln.strip() == "user:")
    except StopIteration:
        raise ConfigError(f"template {name}: needs a line 'user:' before the user message") from None
    system = "\n".join([lines[0][len("system:"):].strip(), *lines[1:user_at]]).strip()
    user = "\n".join(lines[user_at + 1:]).rstrip("\n")
    if "{Prompt}" not in user:
        raise ConfigError(f"template {name}: the user message needs a {{Prompt}} placeholder")
    if "{Responses}" not in user and not _PLACEHOLDER.search(user.replace("{Prompt}", "")):
        raise ConfigError(f"template {name}: needs {{Responses}} or {{Response from Model A}} … placeholders")
    return Template(name=name, system=system, user=user)


def load_template(name_or_path: str) -> Template:
    """`default`, `card`, or the path of a template file."""
    if name_or_path in BUILTIN:
        return parse_template_text(builtin_template_text(name_or_path), name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"template {name_or_path!r}: not 'default', 'card' or an existing file")
    return parse_template_text(path.read_text(encoding="utf-8"), str(path))


def letters_for(n: int) -> list[str]:
    if not 1 <= n <= 26:
        raise ConfigError(f"cannot show {n} models to a judge: between 1 and 26 models are supported")
    return [chr(ord("A") + i) for i in range(n)]


def join_letters(letters: list[str]) -> str:
    """`A`, `A and B`, `A, B, and C` (the card's Oxford comma)."""
    if len(letters) <= 2:
        return " and ".join(letters)
    return ", ".join(letters[:-1]) + ", and " + letters[-1]


def json_example(letters: list[str]) -> str:
    return json.dumps({x: {c: 0 for c in CRITERIA} for x in letters}).replace("0", "<1-5>")


def score_schema(letters: list[str]) -> dict[str, Any]:
    """JSON schema of the answer (for `response_format={"type": "json_schema", …}`)."""
    one = {"type": "object", "properties": {c: {"type": "integer"} for c in CRITERIA},
           "required": list(CRITERIA), "additionalProperties": False}
    return {"type": "object", "properties": {x: one for x in letters}, "required": letters,
            "additionalProperties": False}


def render(template: Template, prompt: str, notes: str, responses: list[str]) -> list[dict[str, str]]:
    """Chat messages for one judgment; `responses[i]` is shown as letter A+i."""
    letters = letters_for(len(responses))
    fixed = template.fixed_letters
    if fixed and list(fixed) != letters:
        raise ConfigError(
            f"template {template.name} shows exactly {len(fixed)} models ({join_letters(list(fixed))}) "
            f"but this run has {len(responses)}; use --template default, which counts the models it shows"
        )
    by_letter = dict(zip(letters, responses, strict=True))
    blocks = "\n".join(f"<{x}>\n{r}\n</{x}>" for x, r in by_letter.items())
    n = len(letters)
    values = {"Prompt": prompt, "Responses": blocks, "Notes": notes, "Letters": join_letters(letters),
              "N": _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n), "JsonExample": json_example(letters)}

    def sub(m: re.Match[str]) -> str:
        return by_letter[m.group(2)] if m.group(2) else values[m.group(1)]

    # NFC like every text mixnu hands to a model (mixnu.text); model responses arrive un-normalised
    return [{"role": "system", "content": normalize_text(template.system)},
            {"role": "user", "content": normalize_text(_PLACEHOLDER.sub(sub, template.user))}]
