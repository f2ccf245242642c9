"""Judge throughput, and scores recovered under faults, against the fake OpenAI-compatible server.

Target (issue 7): at concurrency 32 with 200 ms latency, >= 0.8 x 32 / 0.2 s = 128 judgments/s.
Issue 11: under 30% injected faults (429, 500, hangs, dropped connections, cut bodies, cut or
out-of-range JSON, free text) >= 99% of the scores must end non-null; the re-asks that took are counted.

Every run is a fresh process (`--worker`) judging a fresh run folder, so an implementation given
with `--baseline-src` (e.g. main's `src/` from `git archive main`) is measured side by side with
ours in the same session, against the same server process, its c32 runs interleaved with ours.
`judgments_per_s` counts the judging phase (first request to last record fsynced);
`end_to_end_per_s` the whole `judge()` call. The server runs in its own process
(tests/eval/fake_openai.py); `server_cpu_ms_per_judgment` is its CPU time per judgment.

    .venv/bin/python bench/judge.py [--items 642] [--latency 0.2] [--repeats 3] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULT_TIMEOUT_S = 2.0  # client timeout in the fault run: a `hang` costs this much before the retry


def start_server(latency: float, fault_rate: float, tmp: Path) -> tuple[subprocess.Popen, str]:
    port_file = tmp / f"port-{fault_rate}"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "eval" / "fake_openai.py"), "--latency", str(latency),
                             "--fault-rate", str(fault_rate), "--hang-s", "30", "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not port_file.exists():
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}/v1"


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(spec: dict) -> dict:
    """One judge run in this process (mixnu imported from `spec["src"]`); returns its row."""
    sys.path.insert(0, spec["src"])
    sys.path.insert(1, str(ROOT))
    import openai  # noqa: F401  (imported before timing: it takes seconds on a loaded machine)
    from tests.eval.conftest import make_run

    from mixnu.eval.judge import JudgeConfig, judge
    from mixnu.io import read_jsonl

    run = make_run(Path(spec["dir"]), n=6, reps=max(1, spec["items"] // 6))
    c0, s0 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu_s(spec["server_pid"])
    res = judge(JudgeConfig(run_dir=run, judge_url=spec["url"], judge_model="fake", concurrency=spec["concurrency"],
                            backoff_base_s=0.05, backoff_max_s=1.0, timeout_s=spec["timeout_s"]))
    c1, s1 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu_s(spec["server_pid"])
    client_cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    recs = read_jsonl(run / "judgments.jsonl")
    scores = [v for r in recs for s in r["scores"].values() for v in s.values()]
    return {"judging_s": res.judging_s, "judgments_per_s": res.judgments_per_s,
            "end_to_end_per_s": round(res.judged / res.wall_s, 1), "items": res.items, "ok": res.ok,
            "error": res.errors, "null_scores": res.null_scores,
            "non_null_share": round(sum(v is not None for v in scores) / len(scores), 4),
            "requests": res.requests, "retries": res.retries, "reasks": getattr(res, "reasks", None),
            "reasked_items": getattr(res, "reasked_items", None),
            "all_items_recorded": len({r["key"] for r in recs}) == res.items,
            "client_cpu_ms_per_judgment": round(1000 * client_cpu / res.items, 2),
            "server_cpu_ms_per_judgment": round(1000 * (s1 - s0) / res.items, 2)}


def one(tmp: Path, url: str, pid: int, impl: str, src: str, items: int, concurrency: int, name: str,
        timeout_s: float, latency: float) -> dict:
    spec = {"src": src, "dir": str(tmp / f"{impl}-{name}"), "url": url, "server_pid": pid, "items": items,
            "concurrency": concurrency, "timeout_s": timeout_s}
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                         check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"impl": impl, "run": name, "concurrency": concurrency, **row,
            "ideal_per_s": round(concurrency / latency, 1), "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=642)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3, help="runs at concurrency 32 (the machine is shared: report the median)")
    ap.add_argument("--baseline-src", help="a src/ folder of another mixnu (e.g. main's) to measure side by side")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from _common import markdown_table, write_result  # not in workers: it imports mixnu from our src/
    impls = [("ours", str(ROOT / "src"))] + ([("baseline", str(Path(args.baseline_src).resolve()))]
                                             if args.baseline_src else [])
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, url = start_server(args.latency, 0.0, tmp)
        try:
            rows.append(one(tmp, url, proc.pid, "ours", impls[0][1], args.items // 4, 8, "c8", 120, args.latency))
            for i in range(args.repeats):
                for impl, src in impls:
                    rows.append(one(tmp, url, proc.pid, impl, src, args.items, 32, f"c32-run{i + 1}", 120,
                                    args.latency))
            rows.append(one(tmp, url, proc.pid, "ours", impls[0][1], args.items, 64, "c64", 120, args.latency))
        finally:
            proc.kill()
        proc, url = start_server(args.latency, 0.3, tmp)
        try:
            for impl, src in impls:
                rows.append(one(tmp, url, proc.pid, impl, src, args.items // 2, 32, "c32-30%-faults",
                                FAULT_TIMEOUT_S, args.latency))
        finally:
            proc.kill()
    target = 0.8 * 32 / args.latency
    summary = {}
    for impl, _ in impls:
        c32 = sorted(r["judgments_per_s"] for r in rows if r["impl"] == impl and r["run"].startswith("c32-run"))
        faults = next(r for r in rows if r["impl"] == impl and r["run"] == "c32-30%-faults")
        summary[impl] = {"c32_median_per_s": statistics.median(c32), "c32_min_per_s": c32[0], "c32_max_per_s": c32[-1],
                         "faults_non_null_share": faults["non_null_share"], "faults_reasks": faults["reasks"]}
    cols = ["impl", "run", "concurrency", "items", "judging_s", "judgments_per_s", "ideal_per_s", "end_to_end_per_s",
            "ok", "error", "null_scores", "non_null_share", "requests", "retries", "reasks", "reasked_items",
            "all_items_recorded", "client_cpu_ms_per_judgment", "server_cpu_ms_per_judgment", "loadavg_1min_after"]
    print(markdown_table(rows, cols))
    for impl, s in summary.items():
        print(f"\n{impl}: concurrency 32 median {s['c32_median_per_s']} judgments/s (min {s['c32_min_per_s']}, "
              f"max {s['c32_max_per_s']}), target >= {target:.0f}: {'met' if s['c32_median_per_s'] >= target else 'NOT met'}; "
              f"30% faults: {s['faults_non_null_share']:.2%} of scores non-null, {s['faults_reasks']} re-asks")
    ours = summary["ours"]
    write_result("judge", {"latency_s": args.latency, "target_per_s": target, "fault_timeout_s": FAULT_TIMEOUT_S,
                           "baseline_src": args.baseline_src, "rows": rows, "summary": summary,
                           "c32_median_per_s": ours["c32_median_per_s"], "c32_min_per_s": ours["c32_min_per_s"],
                           "c32_max_per_s": ours["c32_max_per_s"], "met": ours["c32_median_per_s"] >= target,
                           "faults_non_null_share": ours["faults_non_null_share"],
                           "faults_met": ours["faults_non_null_share"] >= 0.99})


if __name__ == "__main__":
    main()
