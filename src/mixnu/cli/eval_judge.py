"""`mixnu eval judge | run | report | suite`: the LLM judge, the whole evaluation, its report, the suite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import JsonOut, Quiet, Sets, build_config, emit

RunDir = Annotated[Path, typer.Argument(help="Run folder (suite.yaml, responses.jsonl …; see docs/eval-run-format.md).")]


def register(group: typer.Typer) -> None:
    """Add the judging commands to the `mixnu eval` group."""
    for add in (_add_judge, _add_report, _add_run, _add_suite):
        add(group)


def _add_judge(group: typer.Typer) -> None:
    """`mixnu eval judge`."""

    @group.command("judge")
    def judge_cmd(
        ctx: typer.Context,
        run_dir: RunDir,
        config: Annotated[Path | None, typer.Option("--config", help="YAML of JudgeConfig fields.")] = None,
        judge_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1. (default: https://api.openai.com/v1)")] = None,
        judge_model: Annotated[str | None, typer.Option(help="Model name on that server. (default: gpt-4o)")] = None,
        template: Annotated[str | None, typer.Option(help="default (counts the models shown), card (verbatim; 5 models) or a template file.")] = None,
        rotations: Annotated[int | None, typer.Option(help="Judge each prompt k times, order rotated; median per score. (default: 1)")] = None,
        seed: Annotated[int | None, typer.Option(help="Seed of the per-prompt shuffle. (default: 0)")] = None,
        concurrency: Annotated[int | None, typer.Option(help="Requests in flight. (default: 8)")] = None,
        max_retries: Annotated[int | None, typer.Option(help="Retries on 429/5xx/timeouts/dropped connections. (default: 6)")] = None,
        timeout_s: Annotated[float | None, typer.Option("--timeout", help="Seconds per request. (default: 120)")] = None,
        response_format: Annotated[str | None, typer.Option(help=(
            "auto (json_schema, then json_object_schema, json_object, none: a refused format moves to the next "
            "at once), or one of them."))] = None,
        parse_retries: Annotated[int | None, typer.Option("--reasks", help=(
            "Re-asks when a reply has a missing, invalid or ambiguous score. (default: 3)"))] = None,
        api_key_env: Annotated[str | None, typer.Option(help="Environment variable holding the API key (local servers need none). (default: OPENAI_API_KEY)")] = None,
        price_prompt: Annotated[float | None, typer.Option(help="USD per 1,000 prompt tokens, for the cost. (default: 0)")] = None,
        price_completion: Annotated[float | None, typer.Option(help="USD per 1,000 completion tokens. (default: 0)")] = None,
        suite: Annotated[Path | None, typer.Option(help="Suite the responses came from (default: RUN_DIR/suite.yaml).")] = None,
        sets: Sets = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Score every response with an LLM judge (card rubric) into RUN_DIR/judgments.jsonl; reruns resume."""
        from mixnu.eval.judge import JudgeConfig, judge

        cfg = build_config(ctx, JudgeConfig, config, sets, keys={"price_prompt": "price_prompt_per_1k",
                                                                 "price_completion": "price_completion_per_1k"})
        res = judge(cfg, quiet=quiet)
        emit(res, json_out, quiet, f"{res.judged} judged ({res.ok} ok, {res.errors} failed, {res.null_scores} null "
             f"scores), {res.reused} reused; {res.requests} requests, {res.retries} retries, {res.reasks} re-asks "
             f"({res.reasked_items} judgments), response_format {res.response_format}; "
             f"{res.prompt_tokens + res.completion_tokens:,} tokens, ${res.cost_usd:.4f}; {res.judgments_per_s} judgments/s")


def _add_report(group: typer.Typer) -> None:
    """`mixnu eval report`."""

    @group.command("report")
    def report_cmd(
        ctx: typer.Context,
        run_dir: RunDir,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: RUN_DIR/report).")] = None,
        judge_model: Annotated[str | None, typer.Option(help="Report this judge's scores (default: the last one).")] = None,
        template: Annotated[str | None, typer.Option(help="Report this template's scores (default: the last one).")] = None,
        bootstrap: Annotated[int | None, typer.Option(help="Bootstrap resamples for the CIs. (default: 2000)")] = None,
        seed: Annotated[int | None, typer.Option(help="Bootstrap seed. (default: 0)")] = None,
        sets: Sets = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Markdown, CSV and PNG report: mean ± 95% CI per model × category/attribute, nulls, position bias, checks."""
        from mixnu.eval.report import ReportConfig, report

        res = report(build_config(ctx, ReportConfig, None, sets))
        emit(res, json_out, quiet, f"report of {res.judgments} judgments ({len(res.models)} models) in {res.report_md}")


def _add_run(group: typer.Typer) -> None:
    """`mixnu eval run`."""

    @group.command("run")
    def run_cmd(
        ctx: typer.Context,
        config: Annotated[Path, typer.Argument(help="YAML with sections generate: (GenerateConfig), judge: (JudgeConfig), report: (optional).")],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (overrides the YAML's out).")] = None,
        sets: Sets = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """The whole evaluation: generate, judge, report (each step resumes what a previous run left)."""
        from mixnu.eval.run import EvalRunConfig, run_eval

        res = run_eval(build_config(ctx, EvalRunConfig, config, sets), quiet=quiet)
        emit(res, json_out, quiet, f"evaluation done: {res.report.report_md}")


def _add_suite(group: typer.Typer) -> None:
    """`mixnu eval suite`."""

    @group.command("suite")
    def suite_cmd(
        path: Annotated[Path | None, typer.Argument(help="Suite YAML (default: the shipped Korean suite).")] = None,
        show: Annotated[str | None, typer.Option(help="Print this prompt (by id).")] = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Validate a prompt suite and show its prompts per category and attribute."""
        from mixnu.eval.suite import describe_suite

        info = describe_suite(path, show)
        emit(info, json_out, quiet, info["text"])
