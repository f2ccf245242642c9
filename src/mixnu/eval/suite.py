"""The prompt suite: the card's five categories and thirteen attributes, validated by a schema.

The default suite ships in the package (`mixnu/_data/suite/mixnu-ko.yaml`); users can pass their
own file of the same shape:

```yaml
name: mixnu-ko
version: 1
prompts:
  - id: hallu-001
    category: hallucination
    attribute: hallucination
    prompt: 이번 수능은 불수능이었어요.
    notes:
      judge: "..."   # what a correct answer must get right (shown to the LLM judge)
      human: "..."   # the same for annotators, may be longer
      confusable: 불수능 / 불(火)  # hallucination prompts: the confusable word and its true meaning
      meaning: "..." # proverbs and idioms: their meaning
```
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mixnu.config import read_yaml
from mixnu.errors import ConfigError
from mixnu.text import normalize_text

Category = Literal["language", "style", "domain", "localization", "hallucination"]
Attribute = Literal[
    "english", "literary", "colloquial", "daily_life", "medicine", "law", "technology", "finance",
    "grammar", "proverbs", "idioms", "culture", "hallucination",
]

# The card's taxonomy: which attributes belong to which category.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "language": ("english",),
    "style": ("literary", "colloquial"),
    "domain": ("daily_life", "medicine", "law", "technology", "finance"),
    "localization": ("grammar", "proverbs", "idioms", "culture"),
    "hallucination": ("hallucination",),
}


class Notes(BaseModel):
    """Guidance for the judge and for human annotators."""

    model_config = ConfigDict(extra="forbid")
    judge: str = Field(min_length=1)
    human: str = Field(min_length=1)
    confusable: str | None = None
    meaning: str | None = None

    @field_validator("judge", "human", "confusable", "meaning")
    @classmethod
    def _nfc(cls, v: str | None) -> str | None:
        return normalize_text(v) if v is not None else None


class Prompt(BaseModel):
    """One evaluation prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    category: Category
    attribute: Attribute
    prompt: str = Field(min_length=1)
    notes: Notes

    @field_validator("prompt")
    @classmethod
    def _nfc(cls, v: str) -> str:
        return normalize_text(v)  # what generate, the judge and annotators see (mixnu.text)

    @model_validator(mode="after")
    def _check(self) -> Prompt:
        if self.attribute not in ATTRIBUTES[self.category]:
            home = next(c for c, attrs in ATTRIBUTES.items() if self.attribute in attrs)
            raise ValueError(
                f"attribute {self.attribute!r} belongs to category {home!r}, not {self.category!r}"
            )
        if not self.prompt.strip() or not self.notes.judge.strip() or not self.notes.human.strip():
            raise ValueError("prompt, notes.judge and notes.human must not be blank")
        if self.attribute == "hallucination" and not self.notes.confusable:
            raise ValueError("hallucination prompts need notes.confusable (the word and its true meaning)")
        if self.attribute in ("proverbs", "idioms") and not self.notes.meaning:
            raise ValueError(f"{self.attribute} prompts need notes.meaning")
        return self


class Suite(BaseModel):
    """A named, versioned list of prompts with unique ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: int = 1
    prompts: list[Prompt] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        seen: dict[str, int] = {}
        for i, p in enumerate(self.prompts):
            if p.id in seen:
                raise ValueError(
                    f"prompt {p.id!r}: duplicate id (prompts #{seen[p.id] + 1} and #{i + 1}; ids must be unique)"
                )
            seen[p.id] = i
        return self

    def by_id(self) -> dict[str, Prompt]:
        return {p.id: p for p in self.prompts}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the suite: ties responses and judgments to a suite."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def default_suite_path() -> Path:
    """The Korean suite shipped with mixnu."""
    return Path(str(resources.files("mixnu") / "_data" / "suite" / "mixnu-ko.yaml"))


def load_suite(path: str | Path | None = None) -> Suite:
    """Load and validate a suite (default: the shipped one).

    A schema error raises `ConfigError` naming the file and the id of the offending prompt.
    """
    path = Path(path) if path is not None else default_suite_path()
    data = read_yaml(path)
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc, data)}") from None


def _describe(exc: ValidationError, data: dict) -> str:
    """One line for the first schema error, naming the offending prompt by id (or by position)."""
    errors = exc.errors()
    first = errors[0]
    loc = list(first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in loc)
    if len(loc) >= 2 and loc[0] == "prompts" and isinstance(loc[1], int):
        prompts = data.get("prompts") or []
        item = prompts[loc[1]] if loc[1] < len(prompts) else None
        pid = item.get("id") if isinstance(item, dict) else None
        field = ".".join(str(p) for p in loc[2:])
        who = f"prompt {pid!r} (#{loc[1] + 1})" if pid is not None else f"prompt #{loc[1] + 1}"
        where = f"{who}, {field}" if field else who
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    text = f"{where}: {msg}" if where else msg
    return " ".join(f"{text}{more}; fix the suite file (format: docs/prompt-suite.md)".split())


def describe_suite(path: str | Path | None, show: str | None = None) -> dict[str, Any]:
    """Validate a suite; its counts per category and attribute (and one prompt if `show`), with a text summary."""
    suite = load_suite(path)
    counts = {cat: {a: sum(p.attribute == a for p in suite.prompts) for a in attrs} for cat, attrs in ATTRIBUTES.items()}
    lines = [f"{path or default_suite_path()}: valid. Suite {suite.name!r} v{suite.version}: {len(suite.prompts)} prompts, "
             f"fingerprint {suite.fingerprint()[:12]}", "", "| category | attribute | prompts |", "|---|---|---|"]
    lines += [f"| {cat} | {a} | {n} |" for cat, attrs in counts.items() for a, n in attrs.items()]
    info: dict[str, Any] = {"name": suite.name, "version": suite.version, "prompts": len(suite.prompts),
                            "fingerprint": suite.fingerprint(), "counts": counts}
    if show is not None:
        p = suite.by_id().get(show)
        if p is None:
            raise ConfigError(f"no prompt {show!r} in suite {suite.name!r}; 'mixnu eval suite' lists the attributes")
        info["prompt"] = p.model_dump(exclude_none=True)
        lines += ["", f"{p.id} [{p.category}/{p.attribute}]", p.prompt,
                  *[f"  {k}: {v}" for k, v in p.notes.model_dump(exclude_none=True).items()]]
    info["text"] = "\n".join(lines)
    return info
