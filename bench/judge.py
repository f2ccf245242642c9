"""Judge throughput against the fake OpenAI-compatible server with 200 ms latency per request.

Target (issue 7): at concurrency 32, >= 0.8 x 32 / 0.2 s = 128 judgments/s. Also measured: other
concurrencies, a run with 30% injected faults (every item must end judged or explicitly null), and
the CPU time per judgment of the judge (client) and of the server, which bounds the throughput a
busy machine can reach. The server runs in its own process (tests/eval/fake_openai.py).
`judgments_per_s` counts the judging phase (first request to last record fsynced);
`end_to_end_per_s` the whole `judge()` call (reading the run, building prompts, client set-up).

    .venv/bin/python bench/judge.py [--items 642] [--latency 0.2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.eval.conftest import make_run  # noqa: E402

from mixnu.eval.judge import JudgeConfig, judge  # noqa: E402
from mixnu.io import read_jsonl  # noqa: E402


def start_server(latency: float, fault_rate: float, tmp: Path) -> tuple[subprocess.Popen, str]:
    port_file = tmp / f"port-{fault_rate}"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "eval" / "fake_openai.py"), "--latency", str(latency),
                             "--fault-rate", str(fault_rate), "--port-file", str(port_file)],
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


def one(tmp: Path, url: str, items: int, concurrency: int, name: str, server_pid: int) -> dict:
    run = make_run(tmp / name, n=6, reps=max(1, items // 6))
    c0, s0 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu_s(server_pid)
    res = judge(JudgeConfig(run_dir=run, judge_url=url, judge_model="fake", concurrency=concurrency,
                            backoff_base_s=0.05, backoff_max_s=1.0))
    c1, s1 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu_s(server_pid)
    client_cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    recs = read_jsonl(run / "judgments.jsonl")
    return {"run": name, "concurrency": concurrency, "items": res.items, "wall_s": res.wall_s,
            "judging_s": res.judging_s, "judgments_per_s": res.judgments_per_s,
            "end_to_end_per_s": round(res.judged / res.wall_s, 1), "ideal_per_s": None, "ok": res.ok, "error": res.errors,
            "null_scores": res.null_scores, "requests": res.requests, "retries": res.retries,
            "all_items_recorded": len({r["key"] for r in recs}) == res.items,
            "client_cpu_ms_per_judgment": round(1000 * client_cpu / res.items, 2),
            "server_cpu_ms_per_judgment": round(1000 * (s1 - s0) / res.items, 2),
            "loadavg_1min_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=642)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=3, help="runs at concurrency 32 (the machine is shared: report the median)")
    args = ap.parse_args()
    import openai  # noqa: F401  (imported before timing: it takes seconds on a loaded machine)

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, url = start_server(args.latency, 0.0, tmp)
        try:
            plan = [(8, args.items // 4, "c8")] + [(32, args.items, f"c32-run{i + 1}") for i in range(args.repeats)]
            for c, n, name in plan + [(64, args.items, "c64")]:
                row = one(tmp, url, n, c, name, proc.pid)
                row["ideal_per_s"] = round(c / args.latency, 1)
                rows.append(row)
        finally:
            proc.kill()
        proc, url = start_server(args.latency, 0.3, tmp)
        try:
            row = one(tmp, url, args.items // 2, 32, "c32-30%-faults", proc.pid)
            row["ideal_per_s"] = round(32 / args.latency, 1)
            rows.append(row)
        finally:
            proc.kill()
    target = 0.8 * 32 / args.latency
    c32 = sorted(r["judgments_per_s"] for r in rows if r["run"].startswith("c32-run"))
    median = statistics.median(c32)
    cols = ["run", "concurrency", "items", "judging_s", "judgments_per_s", "ideal_per_s", "end_to_end_per_s", "ok",
            "error", "null_scores", "requests", "retries", "all_items_recorded", "client_cpu_ms_per_judgment",
            "server_cpu_ms_per_judgment", "loadavg_1min_after"]
    print(markdown_table(rows, cols))
    print(f"\nconcurrency 32: median {median} judgments/s over {len(c32)} runs (min {c32[0]}, max {c32[-1]}); "
          f"target >= {target:.0f}: {'met' if median >= target else 'NOT met'} by the median")
    write_result("judge", {"latency_s": args.latency, "target_per_s": target, "rows": rows,
                           "c32_median_per_s": median, "c32_min_per_s": c32[0], "c32_max_per_s": c32[-1],
                           "met": median >= target})


if __name__ == "__main__":
    main()
