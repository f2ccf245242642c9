"""`mixnu eval ...`: the qualitative evaluation group.

Judging commands (judge, run, report, suite) live in `cli/eval_judge.py`; human verification
(annotate, agreement) in `cli/eval_human.py`.
"""

from __future__ import annotations

import typer

from mixnu.cli import eval_human, eval_judge


def register(app: typer.Typer) -> None:
    """Add the `mixnu eval` group to the root app."""
    group = typer.Typer(
        help="Qualitative evaluation: LLM judge with the card's rubric, reports, human verification.",
        no_args_is_help=True,
    )
    eval_judge.register(group)
    eval_human.register(group)
    app.add_typer(group, name="eval")
