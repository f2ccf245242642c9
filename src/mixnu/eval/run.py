"""The whole evaluation in one call: `run_eval(EvalRunConfig) -> EvalRunResult` (`mixnu eval run`).

Generates (`mixnu.eval.generate`), judges (`mixnu.eval.judge`) and reports (`mixnu.eval.report`) into
one run folder `cfg.out`; each step resumes what an earlier run left there (docs/eval-run-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from mixnu.config import StageConfig, validate_config
from mixnu.eval.generate import GenerateConfig, generate
from mixnu.eval.judge import JudgeConfig, check_template_for_run, judge
from mixnu.eval.report import ReportConfig, ReportResult, report


class EvalRunConfig(StageConfig):
    """`mixnu eval run`: one YAML with `generate:` and `judge:` sections (and an optional `report:`)."""

    out: Path
    generate: dict[str, Any]
    judge: dict[str, Any] = Field(default_factory=dict)
    report: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class EvalRunResult:
    generate: Any
    judge: Any
    report: ReportResult


def run_eval(cfg: EvalRunConfig, quiet: bool = True) -> EvalRunResult:
    """Generate, judge and report into `cfg.out`; every step resumes what an earlier run left there."""
    gcfg = validate_config(GenerateConfig, {**cfg.generate, "out": str(cfg.out)}, "eval run config: generate")
    jcfg = validate_config(JudgeConfig, {**cfg.judge, "run_dir": str(cfg.out)}, "eval run config: judge")
    rcfg = validate_config(ReportConfig, {**cfg.report, "run_dir": str(cfg.out)}, "eval run config: report")
    check_template_for_run(jcfg.template, len(gcfg.models))  # fail before hours of generation, not after
    g = generate(gcfg, quiet=quiet)
    j = judge(jcfg, quiet=quiet)
    return EvalRunResult(generate=g, judge=j, report=report(rcfg))
