"""Tokenizer targets: mixnu's Korean extension of Llama-2 against Llama-2, Llama-3 and Qwen2.

One command: `.venv/bin/python bench/tokenizer.py` (add `--quick` to skip the curve).
On `<shared>/data/eval/dev_sentences.tsv` (never trained on), side by side in one run:
- the card's table (vocab, % byte-level tokens, avg tokens per line, …), overall and per domain;
- targets at total vocab <= 46,262: byte-fallback <= 0.10 %, tokens/line <= 0.29x Llama-2's, fewer
  tokens than Llama-3 and Qwen2, fast-encode throughput >= 0.8x Llama-2's fast tokenizer;
- the curve of added pieces against tokens per line (one extension per vocabulary size).
Writes bench/results/tokenizer.json, tokenizer.md, tokenizer_curve.png, tokenizer_vocab_tokens.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, markdown_table, write_result  # noqa: E402
from mixnu.io import write_text  # noqa: E402
from mixnu.shared import corpus_files, data_dir, llama2_tokenizer_model  # noqa: E402
from mixnu.tokenizer import ExtendConfig, extend_tokenizer, reachable_share  # noqa: E402
from mixnu.tokenizer_compare import CompareConfig, compare_tokenizers, markdown, plot_vocab_tokens  # noqa: E402

CURVE_SIZES = [33000, 34000, 36000, 38000, 40000, 42000, 44000, 46262, 50000, 56000]


def llama2_folder(tmp: Path) -> Path:
    from transformers import AutoTokenizer

    folder = tmp / "llama-2"
    folder.mkdir()
    shutil.copy(llama2_tokenizer_model(), folder / "tokenizer.model")
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)
    return folder


def throughput(folders: dict[str, Path], lines: list[str], reps: int) -> dict[str, dict[str, float]]:
    """Fast-tokenizer encode throughput (chars/s), reps interleaved so that load hits both alike."""
    from tokenizers import Tokenizer

    toks = {name: Tokenizer.from_file(str(f / "tokenizer.json")) for name, f in folders.items()}
    chars = sum(map(len, lines))
    times: dict[str, list[float]] = {n: [] for n in toks}
    for _ in range(reps):
        for name, tok in toks.items():
            t0 = time.perf_counter()
            tok.encode_batch(lines, add_special_tokens=False)
            times[name].append(time.perf_counter() - t0)
    return {n: {"median_s": statistics.median(t), "chars_per_s": chars / statistics.median(t), "reps": reps}
            for n, t in times.items()}


def curve(tmp: Path, corpus: list[Path], dev: Path, base_tokens: int) -> list[dict]:
    import sentencepiece as spm

    from mixnu.tokenizer_compare import read_texts

    texts = [t for _, t in read_texts([dev])]
    rows = []
    for n in CURVE_SIZES:
        out = tmp / f"curve-{n}"
        t0 = time.perf_counter()
        res = extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=corpus, out=out, vocab_size=n,
                                            verify_lines=200))
        secs = time.perf_counter() - t0
        sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
        ids = sp.encode(texts)
        tokens = sum(map(len, ids))
        byte = sum(sp.is_byte(i) for x in ids for i in x)
        rows.append({"vocab": n, "added": res.added, "hangul_pieces": res.added_by_kind["hangul_pieces"],
                     "tokens_per_line": tokens / len(texts), "relative_to_llama2": tokens / base_tokens,
                     "pct_byte": 100 * byte / tokens, "extend_s": round(secs, 1)})
        print(f"  vocab {n}: {rows[-1]['relative_to_llama2']:.4f}x Llama-2, {secs:.1f} s", flush=True)
        shutil.rmtree(out)
    return rows


def plot_curve(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=120)
    ax.plot([r["added"] for r in rows], [r["relative_to_llama2"] for r in rows], "o-", label="mixnu extension")
    ax.axhline(0.29, color="grey", ls="--", lw=1, label="target 0.29x")
    ax.axvline(46262 - 32000, color="tab:red", ls=":", lw=1, label="card's vocab (46,262)")
    ax.set_xlabel("pieces added to Llama-2's 32,000")
    ax.set_ylabel("tokens per dev line, relative to Llama-2")
    ax.set_title("Korean dev set: added pieces vs tokens per line")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the added-pieces curve")
    ap.add_argument("--reps", type=int, default=9, help="throughput repetitions per tokenizer")
    args = ap.parse_args()
    data = data_dir()
    dev = data / "eval" / "dev_sentences.tsv"
    gguf = data / "tokenizers" / "gguf"
    corpus = list(corpus_files().values())
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        ext = extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=corpus, out=tmp / "mixnu"))
        extend_s = time.perf_counter() - t0
        reach = reachable_share(tmp / "mixnu" / "tokenizer.model", 32000)
        l2 = llama2_folder(tmp)
        cmp = compare_tokenizers(CompareConfig(
            tokenizers={"Llama-2": l2, "mixnu (this)": tmp / "mixnu",
                        "Llama-3": gguf / "ggml-vocab-llama-bpe.gguf", "Qwen2": gguf / "ggml-vocab-qwen2.gguf"},
            texts=[dev]))
        from mixnu.tokenizer_compare import read_texts

        lines = [t for _, t in read_texts([dev])]
        tp = throughput({"Llama-2": l2, "mixnu": tmp / "mixnu"}, lines * 5, args.reps)
        rows = {r["tokenizer"]: r for r in cmp.rows}
        curve_rows = [] if args.quick else curve(tmp, corpus, dev, rows["Llama-2"]["tokens"])
        byte_level = None
        if not args.quick:  # a byte-level BPE base: Llama-3 + 8,000 Korean tokens
            t0 = time.perf_counter()
            bl = extend_tokenizer(ExtendConfig(base=gguf / "ggml-vocab-llama-bpe.gguf", corpus=corpus,
                                               out=tmp / "llama3-ko", vocab_size=128257 + 8000))
            bl_s = time.perf_counter() - t0
            bl_cmp = compare_tokenizers(CompareConfig(
                tokenizers={"Llama-3": gguf / "ggml-vocab-llama-bpe.gguf", "Llama-3 + 8k Korean": tmp / "llama3-ko"},
                texts=[dev]))
            byte_level = {"extend_result": bl, "extend_seconds": bl_s, "rows": bl_cmp.rows, "markdown": bl_cmp.markdown}

    m = rows["mixnu (this)"]
    tp_ratio = tp["mixnu"]["chars_per_s"] / tp["Llama-2"]["chars_per_s"]
    targets = [
        {"target": "total vocab <= 46,262", "value": m["vocab"], "met": m["vocab"] <= 46262},
        {"target": "byte-fallback <= 0.10 %", "value": round(m["pct_byte"], 4), "met": m["pct_byte"] <= 0.10},
        {"target": "tokens/line <= 0.29x Llama-2", "value": round(m["relative"], 4), "met": m["relative"] <= 0.29},
        {"target": "fewer tokens than Llama-3", "value": f"{m['tokens']} vs {rows['Llama-3']['tokens']}",
         "met": m["tokens"] < rows["Llama-3"]["tokens"]},
        {"target": "fewer tokens than Qwen2", "value": f"{m['tokens']} vs {rows['Qwen2']['tokens']}",
         "met": m["tokens"] < rows["Qwen2"]["tokens"]},
        {"target": "fast encode >= 0.8x Llama-2 fast", "value": round(tp_ratio, 3), "met": tp_ratio >= 0.8},
        {"target": "added pieces reachable = 100 %", "value": round(100 * reach, 3), "met": reach == 1.0},
    ]
    report = ["## Tokenizers on the Korean dev set (1,000 lines)", "", cmp.markdown]
    for dom, drows in cmp.domains.items():
        report += ["", f"### {dom}", "", markdown(drows)]
    report += ["", "## Targets", "", markdown_table(targets),
               "", f"Fast-encode throughput (dev set ×5, median of {args.reps}): Llama-2 "
               f"{tp['Llama-2']['chars_per_s']:,.0f} chars/s, mixnu {tp['mixnu']['chars_per_s']:,.0f} chars/s "
               f"({tp_ratio:.2f}x). Extending took {extend_s:.1f} s."]
    if curve_rows:
        report += ["", "## Added pieces vs tokens per line", "", markdown_table(curve_rows)]
        plot_curve(curve_rows, RESULTS / "tokenizer_curve.png")
    if byte_level:
        report += ["", "## Byte-level BPE base: Llama-3 + 8,000 Korean tokens", "", byte_level["markdown"], "",
                   f"Extending took {byte_level['extend_seconds']:.1f} s."]
    text = "\n".join(report)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "tokenizer.md", text + "\n")
    plot_vocab_tokens(cmp.rows, RESULTS / "tokenizer_vocab_tokens.png")
    write_result("tokenizer", {
        "dev_set": str(dev), "rows": cmp.rows, "domains": cmp.domains, "targets": targets,
        "throughput": tp, "throughput_ratio": tp_ratio, "reachable_share": reach, "extend_seconds": extend_s,
        "extend_result": ext, "curve": curve_rows, "byte_level": byte_level,
    })


if __name__ == "__main__":
    main()
