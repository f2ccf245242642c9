"""What every benchmark records: the command, the machine, library versions; and a Markdown table.

Usage in a bench script:
    from _common import markdown_table, write_result
    rows = [{"tool": "mixnu", "wall_s": 1.2}, ...]
    print(markdown_table(rows))
    write_result("merge", {"rows": rows, ...})   # -> bench/results/merge.json
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mixnu.io import write_json  # noqa: E402

_LOAD_AT_START = list(os.getloadavg())  # read when the benchmark imports this module, i.e. as it starts

RESULTS = Path(__file__).resolve().parent / "results"
_LIBS = ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors", "accelerate", "datasets",
         "peft", "openai", "mixnu")


def machine_info() -> dict[str, Any]:
    """CPU count, memory, Python and library versions, and the load when the run started."""
    versions = {}
    for lib in _LIBS:
        try:
            versions[lib] = _md.version(lib)
        except _md.PackageNotFoundError:
            versions[lib] = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cpus": os.cpu_count(), "memory_gib": mem_gib, "platform": platform.platform(),
        "python": platform.python_version(), "loadavg_at_start": _LOAD_AT_START,
        "loadavg_at_end": list(os.getloadavg()), "versions": versions,
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` with the command line, time and machine added."""
    record = {
        "benchmark": name,
        "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **data,
    }
    return write_json(RESULTS / f"{name}.json", record)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows of dicts as a GitHub Markdown table (floats to 4 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
