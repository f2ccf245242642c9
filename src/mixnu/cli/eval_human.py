"""`mixnu eval annotate` and `mixnu eval agreement`: human verification of the judge's scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mixnu.cli._common import Force, JsonOut, Quiet, Sets, build_config, emit

RunDir = Annotated[Path, typer.Argument(help="The evaluation run folder (suite.yaml, responses.jsonl, judgments.jsonl).")]


def register(group: typer.Typer) -> None:
    """Add `annotate` and `agreement` to the `mixnu eval` group."""

    @group.command("annotate")
    def annotate(
        ctx: typer.Context,
        run_dir: RunDir,
        sample: Annotated[int | None, typer.Option(
            "--sample", min=1, help="Items to sample, stratified by category (needed the first time; then stored).")] = None,
        seed: Annotated[int | None, typer.Option(help=(
            "Seed of the sample when it is first drawn (default 0); later a different seed is refused."))] = None,
        annotator: Annotated[str | None, typer.Option(
            help="Your name; the printed address opens the page under it (else the page asks).")] = None,
        host: Annotated[str, typer.Option(help="Address to bind; keep 127.0.0.1 unless you mean to expose it.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on (0 = any free port).")] = 8765,
        export: Annotated[Path | None, typer.Option(
            help="Do not serve: write every annotator's scores to this .csv or .jsonl file and exit.")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML file of AnnotateConfig fields.")] = None,
        sets: Sets = None,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Serve a local page where humans score a sample of responses 1-5, blind to the judge.

        Every score is saved to RUN_DIR/annotations.sqlite the moment it is given. Stop the server with Ctrl-C at any time and start it again to continue. Several annotators can score the same stored sample under their own names.
        """
        from mixnu.console import stderr
        from mixnu.eval.annotate import AnnotateConfig, export_annotations, serve_annotation

        if export is not None:
            res = export_annotations(run_dir, export)
            emit(res, json_out, quiet, f"wrote {res.rows} scores by {len(res.annotators)} annotator(s) to {res.path}")
            return
        cfg = build_config(ctx, AnnotateConfig, config, sets)
        host = cfg.host

        def ready(url: str, session) -> None:
            what = "drew" if session.created else "continuing"
            stderr.print(f"{what} a sample of {len(session.items)} items (seed {session.seed}) from {run_dir}",
                         highlight=False)
            if host not in ("127.0.0.1", "localhost", "::1"):
                stderr.print(f"warning: listening on {host}: anyone who can reach it can read the responses and "
                             "score under any name (there is no login)", highlight=False)
            stderr.print(f"annotate at {url}   (Ctrl-C to stop; every score is already saved)",
                         highlight=False, soft_wrap=True)

        res = serve_annotation(cfg, on_ready=ready)
        emit(res, json_out, quiet, "stopped; done per annotator: " +
             (", ".join(f"{a} {n}/{res.sample_size}" for a, n in res.done.items()) or "nobody yet"))

    @group.command("agreement")
    def agreement(
        ctx: typer.Context,
        run_dir: RunDir,
        out: Annotated[Path | None, typer.Option(help="Output folder (default RUN_DIR/agreement).")] = None,
        force: Force = False,
        quiet: Quiet = False,
        json_out: JsonOut = None,
    ) -> None:
        """Judge vs each human and human vs human: weighted kappa, Spearman, exact/+-1 agreement, alpha.

        Writes agreement.md, agreement.json and confusion-matrix PNGs (per criterion and category).
        """
        from mixnu.eval.agreement import AgreementConfig, compute_agreement

        cfg = build_config(ctx, AgreementConfig)
        res = compute_agreement(cfg)
        emit(res, json_out, quiet, f"{res.markdown_summary}\nwrote {res.out}/agreement.md, agreement.json and "
             f"{len(res.pngs)} confusion-matrix PNG(s)")
