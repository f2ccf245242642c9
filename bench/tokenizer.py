"""Tokenizer targets: mixnu's Korean extension of Llama-2 against Llama-2 and six peer tokenizers, dev and ood.

One command: `.venv/bin/python bench/tokenizer.py` (add `--quick` to skip the added-pieces curve and the
byte-level base). Side by side in one run, on `eval/dev_sentences.tsv` (`mixnu.datasets`; same sources as
the corpora, never trained on) and `ood_sentences.tsv` (sources absent from the corpora):
- the card's table (vocab, % byte-level tokens, avg tokens per line, …), per text set and domain, and the
  characters that fell back to bytes, by kind;
- peers: Llama-3, Qwen2 (`mixnu.datasets.gguf_vocab`), Qwen3.5, Command-R, Gemma-4, GPT-NeoX (llama.cpp's
  `ggml-vocab-*.gguf` from the PyPI sdist of llama-cpp-python 0.3.36, downloaded once into bench/.peers/);
- the coverage policy: each choice's cost at 46,262 pieces (`POLICY_VARIANTS`);
- targets at 46,262 pieces: ood <= 0.20 % byte-level and <= 0.29x Llama-2's tokens, dev <= 0.10 % and
  <= 0.29x; sentencepiece ids == fast ids on dev, ood and every corpus line; golden non-Korean strings
  tokenized exactly as Llama-2; every added piece reachable; fast encode >= 0.8x Llama-2's;
- the curve of added pieces against tokens, dev and ood (one extension per vocabulary size).
Writes bench/results/tokenizer.json, tokenizer.md, tokenizer_curve.png, tokenizer_policy.png,
tokenizer_vocab_tokens.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, markdown_table, write_result  # noqa: E402
from mixnu.datasets import corpus_files, data_dir, gguf_vocab, llama2_tokenizer_model  # noqa: E402
from mixnu.io import write_text  # noqa: E402
from mixnu.tokenizer import (  # noqa: E402
    CompareConfig,
    ExtendConfig,
    compare_tokenizers,
    extend_tokenizer,
    fallback_markdown,
    markdown,
    open_for_compare,
    plot_vocab_tokens,
    reachable_share,
    side_by_side,
)

PEERS = Path(__file__).resolve().parent / ".peers"
SDIST = "llama_cpp_python-0.3.36.tar.gz"
PEER_FILES = {"Qwen3.5": "ggml-vocab-qwen35.gguf", "Command-R": "ggml-vocab-command-r.gguf",
              "Gemma-4": "ggml-vocab-gemma-4.gguf", "GPT-NeoX": "ggml-vocab-gpt-neox.gguf"}
GOLDEN = [  # non-Korean text: must get exactly Llama-2's ids (also in tests/test_tokenizer.py)
    "The quick brown fox jumps over the lazy dog. It's 3:45 p.m.; was it?!!!!!!",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\tprint(f(10))",
    "1234567890 3.14159 -42 1e-9 0x1F 1,000,000 $12.50 50%",
    "https://example.com/path?q=tokenizer&lang=ko#frag  ftp://a.b/c  user@mail.org",
    "!!!!!! ?? ... --- *** ### ((()))  [[x]] <tag attr=\"v\"/>",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Ça va? ¿Qué tal?",
    "  leading and trailing spaces  \n\nnew  lines  ",
]

CURVE_SIZES = [33000, 34000, 36000, 38000, 40000, 42000, 44000, 46262, 47262, 48262, 50000, 56000]
# The coverage choices, each measured at 46,262 pieces: one at a time on top of the corpus-only
# selection (the settings before the coverage policy), then the whole policy with other Hanja counts.
CORPUS_ONLY = {"syllables": "seen", "conjoining_jamo": "none", "hanja_prior": 0, "korean_symbols": False}
DEFAULT = "policy (default: Hanja prior 1,800)"
POLICY_VARIANTS = [
    ("corpus only (before the policy)", CORPUS_ONLY),
    ("+ KS X 1001 syllables", {**CORPUS_ONLY, "syllables": "ksx1001+seen"}),
    ("+ modern conjoining jamo (67)", {**CORPUS_ONLY, "conjoining_jamo": "modern"}),
    ("+ all conjoining jamo (256)", {**CORPUS_ONLY, "conjoining_jamo": "all"}),
    ("+ Korean symbols", {**CORPUS_ONLY, "korean_symbols": True}),
    ("+ Hanja prior 1,800", {**CORPUS_ONLY, "hanja_prior": 1800}),
    ("policy, Hanja prior 1,000", {"hanja_prior": 1000}),
    ("policy, Hanja prior 1,400", {"hanja_prior": 1400}),
    (DEFAULT, {}),
    ("policy with all 256 conjoining jamo (the earlier default)", {"conjoining_jamo": "all"}),
    ("policy, Hanja prior 4,632 (all)", {"hanja_prior": 4632}),
    ("policy, all 11,172 syllables", {"syllables": "all", "char_share": 0.95}),
    ("policy at 47,262 pieces", {"vocab_size": 47262}),
    ("policy at 48,262 pieces", {"vocab_size": 48262}),
]


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


def measure(folder: Path, texts: dict[str, list[str]], base_tokens: dict[str, int],
            byte_first: bool = False) -> dict[str, float]:
    """Per text set: tokens of `folder`'s tokenizer.model relative to Llama-2's (`base_tokens`) and % byte-level
    tokens (keys `<set> vs Llama-2`, `<set> % byte`; `byte_first` puts the byte column first, as the tables show)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    row: dict[str, float] = {}
    for name, lines in texts.items():
        ids = sp.encode(lines)
        tokens = sum(map(len, ids))
        rel, byte = tokens / base_tokens[name], 100 * sum(sp.is_byte(i) for x in ids for i in x) / tokens
        row.update({f"{name} % byte": byte, f"{name} vs Llama-2": rel} if byte_first
                   else {f"{name} vs Llama-2": rel, f"{name} % byte": byte})
    return row


def curve(tmp: Path, corpus: list[Path], sets: dict[str, Path]) -> list[dict]:
    """One extension (default policy) per size in CURVE_SIZES: tokens relative to Llama-2 and % byte-level,
    on each text set."""
    import sentencepiece as spm

    from mixnu.tokenizer import read_texts

    texts = {name: [t for _, t in read_texts([path])] for name, path in sets.items()}
    base = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer_model()))
    base_tokens = {name: sum(map(len, base.encode(t))) for name, t in texts.items()}
    rows = []
    for n in CURVE_SIZES:
        out = tmp / f"curve-{n}"
        t0 = time.perf_counter()
        res = extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=corpus, out=out, vocab_size=n,
                                            verify_lines=200))
        secs = time.perf_counter() - t0
        row = {"vocab": n, "added": res.added, "hangul_pieces": res.added_by_kind["hangul_pieces"],
               **measure(out, texts, base_tokens), "extend_s": round(secs, 1)}
        rows.append(row)
        print(f"  vocab {n}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if " " in k), flush=True)
        shutil.rmtree(out)
    return rows


def policy_sweep(tmp: Path, corpus: list[Path], sets: dict[str, Path], built: dict[str, tuple]) -> list[dict]:
    """Each coverage choice at 46,262 pieces: % byte-level and tokens relative to Llama-2, per text set.

    `built`: variant label -> (folder, ExtendResult, seconds) of extensions the caller has already made."""
    import sentencepiece as spm

    from mixnu.tokenizer import read_texts

    texts = {name: [t for _, t in read_texts([path])] for name, path in sets.items()}
    base = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer_model()))
    base_tokens = {name: sum(map(len, base.encode(t))) for name, t in texts.items()}
    rows = []
    for label, settings in POLICY_VARIANTS:
        out = tmp / "policy"
        t0 = time.perf_counter()
        if label in built:
            out, res, secs = built[label]
        else:
            res = extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=corpus, out=out, force=True,
                                                verify_lines=200, **settings))
            secs = time.perf_counter() - t0
        row = {"variant": label, **res.added_by_kind, **measure(out, texts, base_tokens, byte_first=True),
               "extend_s": round(secs, 1)}
        rows.append(row)
        print(f"  {label}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if " " in k and k[0] != "+"),
              flush=True)
    shutil.rmtree(tmp / "policy", ignore_errors=True)
    return rows


def plot_curve(rows: list[dict], path: Path) -> None:
    """Tokens relative to Llama-2 against pieces added (default policy), dev and ood."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=120)
    for name, label in (("dev_sentences", "dev (corpus sources)"), ("ood_sentences", "ood (other sources)")):
        ax.plot([r["added"] for r in rows], [r[f"{name} vs Llama-2"] for r in rows], "o-", ms=4, label=label)
    ax.axhline(0.29, color="grey", ls="--", lw=1, label="target 0.29x")
    ax.axvline(46262 - 32000, color="tab:red", ls=":", lw=1, label="card's vocab (46,262)")
    ax.set_xlabel("pieces added to Llama-2's 32,000 (coverage policy: default)")
    ax.set_ylabel("tokens relative to Llama-2")
    ax.set_title("Korean text: added pieces vs tokens (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot_policy(rows: list[dict], path: Path) -> None:
    """Each coverage variant as a point: tokens relative to Llama-2 (x) against % byte-level tokens (y),
    dev and ood side by side, the targets as a shaded box."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), dpi=120, sharex=True)
    for ax, (name, cap) in zip(axes, (("dev_sentences", 0.10), ("ood_sentences", 0.20)), strict=True):
        ax.fill_between([0.27, 0.29], 0, cap, color="tab:green", alpha=0.12, label=f"target (<= 0.29x, <= {cap} %)")
        for i, r in enumerate(rows):
            x, y = r[f"{name} vs Llama-2"], r[f"{name} % byte"]
            ax.plot(x, y, "o", color="tab:red" if r["variant"] == DEFAULT else "tab:blue", ms=5)
            ax.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xlim(0.278, 0.32)
        ax.set_yscale("symlog", linthresh=0.05)
        ax.set_xlabel("tokens relative to Llama-2")
        ax.set_ylabel("% byte-level tokens")
        ax.set_title(name.replace("_sentences", "") + " set")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle("Coverage policy variants (numbers: rows of the policy table; red: default)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def peer_files() -> dict[str, Path]:
    """llama.cpp's vocab files for the peers, from the llama-cpp-python sdist (pip download, once)."""
    folder = PEERS / "gguf"
    if not all((folder / f).is_file() for f in PEER_FILES.values()):
        if not (PEERS / SDIST).is_file():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "llama-cpp-python==0.3.36", "-d", str(PEERS)], check=True)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(PEERS / SDIST) as tar:
            for member in tar.getmembers():
                if Path(member.name).name in PEER_FILES.values() and "/vendor/llama.cpp/models/" in member.name:
                    (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    return {name: folder / f for name, f in PEER_FILES.items()}


def loadable(peers: dict[str, Path]) -> tuple[dict[str, Path], dict[str, str]]:
    """The peers that `mixnu tokenizer compare` can load, and why the others cannot."""
    ok, failed = {}, {}
    for name, path in peers.items():
        try:
            open_for_compare(name, path)
            ok[name] = path
        except Exception as exc:  # recorded in the results, never hidden
            failed[name] = f"{type(exc).__name__}: {exc}"
    return ok, failed


def proofs(folder: Path, sets: dict[str, Path], corpus: list[Path]) -> dict[str, int]:
    """Lines where sentencepiece and the fast tokenizer disagree (per text), golden strings that differ from
    Llama-2 (sentencepiece and fast), and lines where decode(encode(x)) != x."""
    import sentencepiece as spm
    from tokenizers import Tokenizer

    from mixnu.io import iter_corpus
    from mixnu.tokenizer import read_texts

    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
    base = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer_model()))
    texts = {name: [t for _, t in read_texts([p])] for name, p in sets.items()}
    texts["all corpus lines"] = [ln for p in corpus for ln in iter_corpus(p)]
    out = {}
    for name, lines in texts.items():
        slow = sp.encode(lines)
        got = [e.ids for e in fast.encode_batch(lines, add_special_tokens=False)]
        out[f"spm != fast: {name} ({len(lines):,} lines)"] = sum(a != b for a, b in zip(slow, got, strict=True))
        out[f"decode(encode(x)) != x: {name}"] = sum(sp.decode(x) != t for x, t in zip(slow, lines, strict=True))
    want = base.encode(GOLDEN)
    out[f"golden strings != Llama-2 ({len(GOLDEN)}, spm + fast)"] = sum(a != b for a, b in zip(
        sp.encode(GOLDEN) + [e.ids for e in fast.encode_batch(GOLDEN, add_special_tokens=False)], want + want,
        strict=True))
    return out


def targets_of(cmp, proof: dict[str, int], reach: float, tp_ratio: float) -> list[dict]:
    """The issue's targets, met or not, from the side-by-side rows."""
    dev = {r["tokenizer"]: r for r in cmp.sets["dev_sentences"]}["mixnu (this)"]
    ood = {r["tokenizer"]: r for r in cmp.sets["ood_sentences"]}["mixnu (this)"]
    rows = [
        {"target": "total vocab <= 46,262", "value": dev["vocab"], "met": dev["vocab"] <= 46262},
        {"target": "ood: byte-level <= 0.20 %", "value": round(ood["pct_byte"], 4), "met": ood["pct_byte"] <= 0.20},
        {"target": "ood: tokens <= 0.29x Llama-2", "value": round(ood["relative"], 4), "met": ood["relative"] <= 0.29},
        {"target": "dev: byte-level <= 0.10 %", "value": round(dev["pct_byte"], 4), "met": dev["pct_byte"] <= 0.10},
        {"target": "dev: tokens <= 0.29x Llama-2", "value": round(dev["relative"], 4), "met": dev["relative"] <= 0.29},
    ]
    rows += [{"target": k + " = 0", "value": v, "met": v == 0} for k, v in proof.items()]
    rows += [{"target": "added pieces reachable = 100 %", "value": round(100 * reach, 3), "met": reach == 1.0},
             {"target": "fast encode >= 0.8x Llama-2 fast", "value": round(tp_ratio, 3), "met": tp_ratio >= 0.8}]
    return rows


def all_met_line(rows: list[dict]) -> str:
    """The smallest measured vocabulary at which the four dev/ood targets hold together."""
    ok = [r["vocab"] for r in rows if r["dev_sentences vs Llama-2"] <= 0.29 and r["ood_sentences vs Llama-2"] <= 0.29
          and r["dev_sentences % byte"] <= 0.10 and r["ood_sentences % byte"] <= 0.20]
    return (f"Smallest measured vocabulary meeting all four dev/ood targets: {min(ok):,} pieces." if ok
            else "No measured vocabulary meets all four dev/ood targets.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the added-pieces curve and the byte-level base")
    ap.add_argument("--reps", type=int, default=9, help="throughput repetitions per tokenizer")
    args = ap.parse_args()
    data = data_dir()
    sets = {"dev_sentences": data / "eval" / "dev_sentences.tsv", "ood_sentences": data / "eval" / "ood_sentences.tsv"}
    gguf = gguf_vocab("llama-bpe").parent  # the data folder's, else fetched once (Qwen2's file sits beside it)
    corpus = list(corpus_files().values())
    peers, peers_failed = loadable(peer_files())
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        ext = extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=corpus, out=tmp / "mixnu"))
        extend_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        before = extend_tokenizer(ExtendConfig(base=llama2_tokenizer_model(), corpus=corpus, out=tmp / "before",
                                               **CORPUS_ONLY))
        built = {POLICY_VARIANTS[0][0]: (tmp / "before", before, time.perf_counter() - t0),
                 DEFAULT: (tmp / "mixnu", ext, extend_s)}
        reach = reachable_share(tmp / "mixnu" / "tokenizer.model", 32000)
        proof = proofs(tmp / "mixnu", sets, corpus)
        l2 = llama2_folder(tmp)
        cmp = compare_tokenizers(CompareConfig(
            tokenizers={"Llama-2": l2, "mixnu (this)": tmp / "mixnu", "mixnu corpus-only (before)": tmp / "before",
                        "Llama-3": gguf / "ggml-vocab-llama-bpe.gguf", "Qwen2": gguf / "ggml-vocab-qwen2.gguf",
                        **peers},
            texts=list(sets.values())))
        from mixnu.tokenizer import read_texts

        lines = [t for _, t in read_texts([sets["dev_sentences"]])]
        tp = throughput({"Llama-2": l2, "mixnu": tmp / "mixnu"}, lines * 5, args.reps)
        sweep = policy_sweep(tmp, corpus, sets, built)
        curve_rows = [] if args.quick else curve(tmp, corpus, sets)
        byte_level = None if args.quick else byte_level_base(tmp, corpus, gguf, sets["dev_sentences"])

    tp_ratio = tp["mixnu"]["chars_per_s"] / tp["Llama-2"]["chars_per_s"]
    targets = targets_of(cmp, proof, reach, tp_ratio)
    report = ["## Tokenizers on the Korean dev set (1,000 lines) and the out-of-domain set (911 lines)", "",
              side_by_side(cmp.sets), "", "Peers that did not load: "
              + ("; ".join(f"{k} ({v})" for k, v in peers_failed.items()) or "none") + "."]
    for name, rows in cmp.sets.items():
        report += ["", f"### {name}", "", markdown(rows)]
    for dom, drows in cmp.domains.items():
        report += ["", f"### {dom}", "", markdown(drows)]
    keep = {k: v for k, v in cmp.fallback.items() if k.startswith("mixnu")}
    report += ["", "## Characters that fell back to bytes (mixnu), by kind", "", fallback_markdown(keep),
               "", "## Coverage policy: each choice at 46,262 pieces (unless named)", "",
               markdown_table([{"#": i + 1, **r} for i, r in enumerate(sweep)]),
               "", "![policy variants](tokenizer_policy.png)",
               "", "## Targets", "", markdown_table(targets),
               "", f"Fast-encode throughput (dev set ×5, median of {args.reps}): Llama-2 "
               f"{tp['Llama-2']['chars_per_s']:,.0f} chars/s, mixnu {tp['mixnu']['chars_per_s']:,.0f} chars/s "
               f"({tp_ratio:.2f}x). Extending took {extend_s:.1f} s."]
    plot_policy(sweep, RESULTS / "tokenizer_policy.png")
    if curve_rows:
        report += ["", "## Added pieces vs tokens (default policy, dev and ood)", "", markdown_table(curve_rows),
                   "", "![curve](tokenizer_curve.png)", "", all_met_line(curve_rows)]
        plot_curve(curve_rows, RESULTS / "tokenizer_curve.png")
    if byte_level:
        report += ["", "## Byte-level BPE base: Llama-3 + 8,000 Korean tokens (dev)", "", byte_level["markdown"], "",
                   f"Extending took {byte_level['extend_seconds']:.1f} s."]
    text = "\n".join(report)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "tokenizer.md", text + "\n")
    plot_vocab_tokens(cmp.sets["ood_sentences"], RESULTS / "tokenizer_vocab_tokens.png",
                      "out-of-domain set: vocabulary size vs tokens per line (lower is better)")
    write_result("tokenizer", {
        "texts": {k: str(v) for k, v in sets.items()}, "rows": cmp.rows, "sets": cmp.sets, "domains": cmp.domains,
        "fallback": cmp.fallback, "peers": {k: str(v) for k, v in peers.items()}, "peers_failed": peers_failed,
        "policy_sweep": sweep, "proofs": proof, "targets": targets, "throughput": tp, "throughput_ratio": tp_ratio,
        "reachable_share": reach, "extend_seconds": extend_s, "extend_result": ext, "curve": curve_rows,
        "byte_level": byte_level,
    })


def byte_level_base(tmp: Path, corpus: list[Path], gguf: Path, dev: Path) -> dict:
    """A byte-level BPE base: Llama-3 + 8,000 Korean tokens, against Llama-3 on the dev set."""
    t0 = time.perf_counter()
    bl = extend_tokenizer(ExtendConfig(base=gguf / "ggml-vocab-llama-bpe.gguf", corpus=corpus,
                                       out=tmp / "llama3-ko", vocab_size=128257 + 8000))
    bl_s = time.perf_counter() - t0
    bl_cmp = compare_tokenizers(CompareConfig(
        tokenizers={"Llama-3": gguf / "ggml-vocab-llama-bpe.gguf", "Llama-3 + 8k Korean": tmp / "llama3-ko"},
        texts=[dev]))
    return {"extend_result": bl, "extend_seconds": bl_s, "rows": bl_cmp.rows, "markdown": bl_cmp.markdown}


if __name__ == "__main__":
    main()
