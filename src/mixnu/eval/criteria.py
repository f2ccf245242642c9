"""The card's three criteria and their rubric: the one place they are spelled.

`CRITERIA` (in this order everywhere: judge prompts, JSON schema, reports, annotation page) comes from
the `Criterion` type, so the pydantic field of a score, the SQL `CHECK` of the annotation store, the
judge-reply regexes and the reports cannot disagree. `RUBRIC` is the card's 1–5 description of each
level (shown beside the focused criterion on the annotation page), `LANGUAGE_NOTE` its extra rule
(docs/annotate.md).
"""

from __future__ import annotations

from typing import Literal, get_args

Criterion = Literal["fluency", "relevance", "accuracy"]
CRITERIA: tuple[str, ...] = get_args(Criterion)

# The card's rubric: for each criterion, what a score of 1, 2, 3, 4 and 5 means.
RUBRIC: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fluency", (
        "The output makes no sense at all.",
        "Severe noise is present (e.g., word repetition, symbols). The output makes sense at the phrase "
        "level but not at the sentence level.",
        "Sentences are generally coherent but contain unnecessary and irrelevant noise.",
        "Sentences contain some noise that does not significantly degrade overall fluency, or relevant "
        "noise such as PII (e.g., phone numbers, addresses).",
        "Sentences are fluent without noise.",
    )),
    ("relevance", (
        "Sentences are not relevant to the prompt.",
        "Sentences do not answer the prompt's question but are relevant to the topic.",
        "Sentences provide an indirect and low-quality answer to the prompt's question.",
        "Sentences include a direct answer to the prompt's question, though not entirely consistent or coherent.",
        "Sentences fully answer the prompt's question.",
    )),
    ("accuracy", (
        "The information is mostly incorrect or misleading, with very few accurate details.",
        "There are numerous errors, and only some of the information is accurate.",
        "The main information is accurate, but there are some significant errors.",
        "Most information is accurate with only minor errors that do not significantly affect understanding.",
        "All information and details are completely accurate with no errors or distortions.",
    )),
)
LANGUAGE_NOTE = "Deduct fluency points if the model answers in a different language from the prompt."


def sql_in_list() -> str:
    """`('fluency', 'relevance', 'accuracy')`: the criteria as an SQL `IN (...)` list."""
    return "(" + ", ".join(f"'{c}'" for c in CRITERIA) + ")"
