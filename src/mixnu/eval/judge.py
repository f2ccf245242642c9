"""The LLM judge: `judge(JudgeConfig) -> JudgeResult` scores every response of a run folder.

Reads `RUN_DIR/suite.yaml` (or `suite`) and `RUN_DIR/responses.jsonl`; appends to
`RUN_DIR/judgments.jsonl` and writes `RUN_DIR/judge_summary.json` (docs/eval-run-format.md).

For every (prompt, sample) the models' responses are shown to the judge as letters A, B, … in an order
shuffled with `seed`; `rotations` k judges each group k times, the order rotated by one each time.
Each judgment is keyed by sha256(judge model, template, prompt, notes, responses, order, rotation) and
appended with fsync as soon as it arrives (records arriving during one fsync share the next): a rerun (after a crash or kill -9) skips every key already
stored, so nothing is asked twice and nothing is lost; a changed prompt, response or template gets a
new key, so only its own judgments are redone. Records whose call failed (`status: "error"`) or that
kept a null score are asked again by a rerun.

Calls go to any OpenAI-compatible endpoint with the official client (`mixnu.eval.client`): bounded
concurrency, retries with backoff, jitter and `Retry-After`. The judge is asked for JSON
(`response_format` `RF_MODES`: json_schema, llama.cpp's json_object + schema, json_object, none); a
refusal of the format (4xx, or a 5xx whose body says the format is invalid) moves to the next mode
at once, and the run keeps the first mode that worked. The reply is parsed by `mixnu.eval.parse`;
a reply with a missing, invalid (not an integer 1–5) or ambiguous score is asked again, up to
`parse_retries` times, in a follow-up turn naming the problem. A score is an integer 1–5 or null,
never 0, and is never moved to another model.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import Field

from mixnu.config import StageConfig
from mixnu.console import progress
from mixnu.errors import ConfigError, JudgeError
from mixnu.eval.client import (
    CallFailure,
    CallStats,
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
    dump_usage,
    gather_or_cancel,
    make_client,
)
from mixnu.eval.criteria import CRITERIA
from mixnu.eval.parse import ParsedReply, parse_reply
from mixnu.eval.records import judgment_key, latest_by_key, load_run
from mixnu.eval.suite import Suite
from mixnu.eval.templates import (
    Template,
    join_letters,
    json_example,
    letters_for,
    load_template,
    render,
    score_schema,
)
from mixnu.io import append_jsonl_many, write_json

RF_MODES = ("json_schema", "json_object_schema", "json_object", "none")


class JudgeConfig(StageConfig):
    """Settings of `mixnu eval judge` (YAML keys = these fields)."""

    run_dir: Path
    judge_url: str = "https://api.openai.com/v1"
    judge_model: str = "gpt-4o"
    suite: Path | None = None            # default: RUN_DIR/suite.yaml
    template: str = "default"            # default | card | path of a template file
    rotations: int = Field(1, ge=1)
    seed: int = 0
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(512, ge=16)
    response_format: Literal["auto", "json_schema", "json_object_schema", "json_object", "none"] = "auto"
    parse_retries: int = Field(3, ge=0)  # re-asks when a score is missing, invalid or ambiguous
    api_key_env: str = "OPENAI_API_KEY"
    price_prompt_per_1k: float = Field(0.0, ge=0)      # USD per 1,000 prompt tokens
    price_completion_per_1k: float = Field(0.0, ge=0)  # USD per 1,000 completion tokens
    retry_errors: bool = True


@dataclass(frozen=True)
class JudgeResult:
    """Counts, tokens and cost of one `judge` call (`items` = judgments the run needs in total)."""

    run_dir: Path
    judgments_path: Path
    items: int
    reused: int
    judged: int
    ok: int
    errors: int
    null_scores: int
    requests: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    wall_s: float            # the whole call: reading the run, building prompts, judging, writing
    judging_s: float         # from the first request to the last record on disk
    judgments_per_s: float   # judged / judging_s
    response_format: str     # the mode that worked (auto: the first one the server did not refuse)
    reasks: int = 0          # follow-up requests after unusable replies (missing, invalid or ambiguous scores)
    reasked_items: int = 0   # judgments that needed at least one re-ask
    incomplete: int = 0      # judgments stored with null scores after every re-ask
    response_format_refusals: tuple[dict[str, Any], ...] = ()  # what the server refused, in order


@dataclass(frozen=True)
class JudgeRequest:
    """One judgment to make: a (prompt, sample, rotation) with the models in shown order."""

    key: str
    prompt_id: str
    sample: int
    rotation: int
    order: tuple[str, ...]
    messages: list[dict[str, str]] = field(compare=False)


def cost_usd(usage: dict[str, int], cfg: JudgeConfig) -> float:
    """USD for `usage` (`prompt_tokens`, `completion_tokens`) at the config's prices per 1,000 tokens."""
    return (usage["prompt_tokens"] * cfg.price_prompt_per_1k
            + usage["completion_tokens"] * cfg.price_completion_per_1k) / 1000


def shown_order(models: list[str], seed: int, prompt_id: str, sample: int, rotation: int) -> list[str]:
    """The models in the order shown to the judge: a seeded shuffle per (prompt, sample), then rotated."""
    base = sorted(models)
    random.Random(f"{seed}/{prompt_id}/{sample}").shuffle(base)
    r = rotation % len(base)
    return base[r:] + base[:r]


def build_requests(suite: Suite, records: list[dict[str, Any]], template: Template, cfg: JudgeConfig) -> list[JudgeRequest]:
    """Every judgment the run needs, in suite order."""
    groups: dict[str, dict[int, dict[str, str]]] = {}
    for r in records:
        groups.setdefault(r["prompt_id"], {}).setdefault(int(r["sample"]), {})[r["model"]] = r["response"]
    requests: list[JudgeRequest] = []
    for p in suite.prompts:
        pid = p.id
        for sample, by_model in sorted(groups.get(pid, {}).items()):
            letters_for(len(by_model))
            for rot in range(cfg.rotations):
                order = shown_order(list(by_model), cfg.seed, pid, sample, rot)
                shown = [by_model[m] for m in order]
                key = judgment_key(cfg.judge_model, template.sha, p.prompt, p.notes.judge, shown, order, sample, rot)
                requests.append(JudgeRequest(key, pid, sample, rot, tuple(order), render(template, p.prompt, p.notes.judge, shown)))
    return requests


class _Rejected(Exception):
    """The judge refused one request (4xx) in every response_format mode left to try."""


_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|structured output|grammar", re.I)
_REFUSAL_WORDS = re.compile(r"invalid|validation|unsupported|not supported|must be|should be|unknown|"
                            r"unrecognized|not allowed|not permitted|extra", re.I)


def is_format_refusal(status: int, message: str) -> bool:
    """True for a 5xx whose body says the request's `response_format` is invalid.

    llama-cpp-python's server answers `{"type": "json_schema", …}` with HTTP 500 and a validation
    message (`'loc': ('body', 'response_format', 'type'), 'msg': "Input should be 'text' or
    'json_object'"`): that is a refusal of the format, not a transient fault, so it is not retried.
    """
    return status >= 500 and bool(_FORMAT_WORDS.search(message)) and bool(_REFUSAL_WORDS.search(message))


def response_format_body(mode: str, letters: list[str]) -> dict[str, Any] | None:
    """The `response_format` of one mode (`RF_MODES`); None for `none`."""
    if mode == "json_schema":  # OpenAI, vLLM, llama.cpp's llama-server
        return {"type": "json_schema", "json_schema": {"name": "scores", "strict": True,
                                                       "schema": score_schema(letters)}}
    if mode == "json_object_schema":  # llama-cpp-python's own form, enforced by a grammar
        return {"type": "json_object", "schema": score_schema(letters)}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def reask_message(problem: str, letters: list[str]) -> dict[str, str]:
    """The follow-up turn that asks again after an unusable reply (the reply stays in the conversation)."""
    return {"role": "user", "content": (
        f"Your reply could not be used ({problem}). Score every criterion of every model "
        f"({join_letters(letters)}) with an integer from 1 to 5. Answer with JSON only, in exactly this "
        f"form: {json_example(letters)}")}


class _Judge:
    """One run's state: client, retry policy, counters and the response_format that works (no globals)."""

    def __init__(self, cfg: JudgeConfig, template: Template, out: Path) -> None:
        self.cfg, self.template, self.out = cfg, template, out
        self.stats = CallStats()
        self.policy = RetryPolicy(cfg.max_retries, cfg.backoff_base_s, cfg.backoff_max_s,
                                  random.Random(cfg.seed))
        self.auto_rf = cfg.response_format == "auto"
        self.rf_index = 0 if self.auto_rf else RF_MODES.index(cfg.response_format)
        self.refusals: list[dict[str, Any]] = []  # response_format modes the server refused, in order
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.ok = self.errors = self.nulls = self.reasks = self.reasked = self.incomplete = 0
        self.where = f"judge {cfg.judge_model!r} at {cfg.judge_url}"
        self.clients: list[Any] = []
        self.t_start = self.t_end = 0.0  # the judging phase: first request to last record on disk

    @property
    def rf_mode(self) -> str:
        return RF_MODES[self.rf_index]

    async def _ask(self, client: Any, messages: list[dict[str, str]], letters: list[str]) -> tuple[Any, str]:
        """One reply and the response_format mode it came with.

        A refusal of the request (4xx, or a 5xx saying the format is invalid) moves on to the next
        mode at once (`auto` only); the run keeps the first mode that worked from then on.
        """
        index = self.rf_index
        while True:
            mode = RF_MODES[index]
            body: dict[str, Any] = {"model": self.cfg.judge_model, "messages": messages,
                                    "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
            if (rf := response_format_body(mode, letters)) is not None:
                body["response_format"] = rf

            async def fn(body: dict[str, Any] = body) -> Any:
                # The client's own `post` (same auth, errors and timeouts as `chat.completions.create`)
                # returning the raw reply: `create` spends ~3 ms of CPU per call transforming the
                # parameters and building pydantic objects, which caps throughput at high concurrency.
                resp = await client.post("/chat/completions", body=body, cast_to=httpx.Response)
                return resp.json()

            res = await call_with_retries(fn, self.policy, self.stats, self.where,
                                          refused=is_format_refusal if rf is not None else None)
            if not isinstance(res, CallFailure):
                if index > self.rf_index:  # a lower mode worked where a higher one was refused
                    self.rf_index = index
                return res, mode
            if len(self.refusals) < 10:
                self.refusals.append({"response_format": mode, "status": res.status, "message": res.message[:300]})
            if mode == "none" or not self.auto_rf:
                raise _Rejected(f"{self.where} rejected the request (response_format {mode}): "
                                f"HTTP {res.status}: {res.message[:200]}")
            index = max(index + 1, self.rf_index)  # another request may have found a working mode meanwhile

    async def judge_one(self, item: JudgeRequest, client: Any) -> dict[str, Any]:
        """Ask (and re-ask, up to `parse_retries` times, while any score is missing, invalid or
        ambiguous); the record keeps the attempt with the most valid scores."""
        letters = letters_for(len(item.order))
        t0 = time.perf_counter()
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        raw: str | None = None
        error: str | None = None
        best = ParsedReply({x: dict.fromkeys(CRITERIA) for x in letters}, "no reply")
        best_raw: str | None = None
        messages, problems, mode, calls = list(item.messages), [], None, 0
        try:
            for attempt in range(self.cfg.parse_retries + 1):
                if attempt:
                    messages = [*messages, {"role": "assistant", "content": raw or ""},
                                reask_message(problems[-1], letters)]
                res, mode = await self._ask(client, messages, letters)
                calls += 1
                for k, v in dump_usage(res.get("usage")).items():
                    usage[k] += v
                choice = (res.get("choices") or [{}])[0]
                raw = (choice.get("message") or {}).get("content")
                parsed = parse_reply(raw, letters)
                if attempt == 0 or (parsed.valid, parsed.read) > (best.valid, best.read):
                    best, best_raw = parsed, raw
                if parsed.complete:
                    break
                cut = " (cut off at max_tokens)" if choice.get("finish_reason") == "length" else ""
                problems.append(f"{parsed.problem}{cut}")
            if not best.complete:
                error = problems[-1]
        except (RetriesExhausted, _Rejected) as exc:
            if self.stats.successes == 0:  # nothing has worked yet: a setup problem, stop with one line
                raise JudgeError(str(exc)) from None
            error = str(exc)  # one item failed (e.g. a prompt too long for the judge): stored, retried next run
        return self._record(item, letters, best, best_raw if best_raw is not None else raw, error, usage, calls,
                            problems, mode, t0)

    def _record(self, item: JudgeRequest, letters: list[str], best: ParsedReply, raw: str | None, error: str | None,
                usage: dict[str, int], calls: int, problems: list[str], mode: str | None, t0: float) -> dict[str, Any]:
        scores = {m: best.scores[x] for x, m in zip(letters, item.order, strict=True)}
        status = "ok" if best.read else "error"  # error: no reply, nothing readable, or ambiguous
        nulls = sum(v is None for s in scores.values() for v in s.values())
        reasks = max(0, calls - 1)
        self.ok += status == "ok"
        self.errors += status == "error"
        self.nulls += nulls
        self.reasks += reasks
        self.reasked += reasks > 0
        self.incomplete += status == "ok" and nulls > 0
        for k, v in usage.items():
            self.usage[k] += v
        cost = cost_usd(usage, self.cfg)
        return {
            "key": item.key, "prompt_id": item.prompt_id, "sample": item.sample, "rotation": item.rotation,
            "judge_model": self.cfg.judge_model, "template": self.template.name, "template_sha": self.template.sha,
            "order": list(item.order), "status": status, "scores": scores, "null_scores": nulls,
            "raw": raw, "error": error, "usage": usage, "cost_usd": round(cost, 8), "calls": calls,
            "reasks": reasks, "problems": problems,
            "response_format": mode, "seed": self.cfg.seed,
            "latency_s": round(time.perf_counter() - t0, 4), "created": time.time(),
        }

    async def run(self, items: list[JudgeRequest], quiet: bool) -> None:
        # `concurrency` workers share clients of <= 8 connections each: httpx's pool bookkeeping costs
        # O(connections^2) per request, which would cap throughput far below the server's at 32+.
        n_workers = min(self.cfg.concurrency, len(items))
        per_client = 8
        self.clients = [make_client(self.cfg.judge_url, self.cfg.api_key_env, self.cfg.timeout_s,
                                    min(per_client, n_workers - i)) for i in range(0, n_workers, per_client)]
        queue: asyncio.Queue[JudgeRequest] = asyncio.Queue()
        for it in items:
            queue.put_nowait(it)
        writer = _Writer(self.out)
        self.t_start = time.perf_counter()
        try:
            with progress(quiet, "judgments") as bar:
                task = bar.add_task("judge", total=len(items))

                async def worker(w: int) -> None:
                    client = self.clients[w // per_client]
                    while not queue.empty():
                        record = await self.judge_one(queue.get_nowait(), client)
                        writer.put(record)
                        bar.advance(task)

                tasks = [asyncio.create_task(worker(w)) for w in range(n_workers)]
                await gather_or_cancel(tasks)
        finally:
            await writer.close()
            self.t_end = time.perf_counter()
            for c in self.clients:
                await c.close()


class _Writer:
    """The single writer of judgments.jsonl: group commit of the records that arrived meanwhile.

    `put` hands a record over and returns at once; one flusher task appends and fsyncs everything
    pending in a worker thread (so the event loop keeps serving requests during the fsync), then
    looks again. A kill loses at most the records of the fsync in progress, like requests in flight:
    the next run asks for those again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[dict[str, Any]] = []
        self.flusher: asyncio.Task[None] | None = None

    def put(self, record: dict[str, Any]) -> None:
        self.pending.append(record)
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            await asyncio.to_thread(append_jsonl_many, self.path, batch)

    async def close(self) -> None:
        """Wait until every record handed over is on disk (also when the run was cancelled)."""
        if self.flusher is not None:
            await asyncio.shield(self.flusher)
        if self.pending:
            append_jsonl_many(self.path, self.pending)
            self.pending = []


def judge(cfg: JudgeConfig, quiet: bool = True) -> JudgeResult:
    """Judge every response of `cfg.run_dir` not judged yet; see the module docstring."""
    t0 = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    template = load_template(cfg.template)
    suite, records = load_run(run_dir, cfg.suite)
    items = build_requests(suite, records, template, cfg)
    out = run_dir / "judgments.jsonl"
    stored = latest_by_key(out)
    todo = [it for it in items if it.key not in stored
            or (cfg.retry_errors and (stored[it.key].get("status") != "ok" or stored[it.key].get("null_scores")))]
    state = _Judge(cfg, template, out)
    if todo:
        asyncio.run(state.run(todo, quiet))
    judging = state.t_end - state.t_start
    wall = time.perf_counter() - t0
    cost = cost_usd(state.usage, cfg)
    result = JudgeResult(
        run_dir=run_dir, judgments_path=out, items=len(items), reused=len(items) - len(todo), judged=len(todo),
        ok=state.ok, errors=state.errors, null_scores=state.nulls, requests=state.stats.requests,
        retries=state.stats.retries, prompt_tokens=state.usage["prompt_tokens"],
        completion_tokens=state.usage["completion_tokens"], cost_usd=round(cost, 6), wall_s=round(wall, 3),
        judging_s=round(judging, 3), judgments_per_s=round(len(todo) / judging, 2) if todo and judging > 0 else 0.0,
        response_format=state.rf_mode, reasks=state.reasks, reasked_items=state.reasked,
        incomplete=state.incomplete, response_format_refusals=tuple(state.refusals),
    )
    summary = {"config": cfg.model_dump(mode="json"), "template_sha": template.sha, "result": result}
    write_json(run_dir / "judge_summary.json", summary)
    return result


def check_template_for_run(template_name: str, n_models: int) -> None:
    """`ConfigError` early if a fixed-slot template (the card's) cannot show `n_models` models."""
    fixed = load_template(template_name).fixed_letters
    if fixed and len(fixed) != n_models:
        raise ConfigError(f"template {template_name} shows exactly {len(fixed)} models but the run has "
                          f"{n_models}; use --template default")
