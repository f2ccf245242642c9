"""Rebuild mixnu's built-in data (src/mixnu/_data/datasets/) from a data folder laid out like the shared one.

    python scripts/build_builtin_data.py /path/to/shared/data

Each file is compressed with xz (preset 9, extreme) and listed in `manifest.json` with the sha256 and
size of its decompressed bytes (what `mixnu.datasets.load_builtin` checks), its lines and characters
(non-blank lines as `mixnu.io.iter_corpus` reads them; rows of a .tsv) and its licence. Licence texts and
DATA_LICENSES.md sit beside the files and are written by hand.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import sys
from pathlib import Path

from mixnu.io import iter_corpus, read_domain_tsv

OUT = Path(__file__).resolve().parents[1] / "src" / "mixnu" / "_data" / "datasets"
DOMAINS = ("law", "tech", "daily", "literature")
CORPUS_LICENCE = {
    "law": "not protected works (Korean Copyright Act art. 7): statutes and court decisions",
    "tech": "MPL-2.0 (LibreOffice help), MIT/Apache-2.0 (Korean Rust book), PSF-2.0 (Korean Python docs)",
    "daily": "MIT (songys/Chatbot_data), CC0-1.0 (NSMC)",
    "literature": "CC-BY-SA-4.0 (KoCoNovel authors), public domain (Kim Yu-jeong)",
}
OOD_LICENCE = ("CC-BY-SA-3.0 (gnome-user-docs ko), official documents (konlpy kobill), Apache-2.0 (ttyping), "
               "public domain text (mydesire)")


def entries() -> list[tuple[str, str, str, str]]:
    """(dataset, relative path, domain or '', licence) for every built-in file."""
    rows = [("ko-corpus", f"corpus/{d}.txt", d, CORPUS_LICENCE[d]) for d in DOMAINS]
    rows += [("ko-heldout", f"eval/{d}_heldout.txt", d, CORPUS_LICENCE[d]) for d in DOMAINS]
    rows += [("ko-dev", "eval/dev_sentences.tsv", "", "as the corpora it was sampled from (see ko-heldout)"),
             ("ko-ood", "eval/ood_sentences.tsv", "", OOD_LICENCE),
             ("llama-2-tokenizer", "tokenizers/llama-2/tokenizer.model", "", "Llama 2 Community License")]
    return rows


def main(src: Path) -> None:
    files = {}
    for dataset, rel, domain, licence in entries():
        raw = (src / rel).read_bytes()
        xz = OUT / (rel + ".xz")
        xz.parent.mkdir(parents=True, exist_ok=True)
        xz.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
        if rel.endswith(".tsv"):  # domain<TAB>text rows, header skipped; characters of the text only
            lines = [t for _, t in read_domain_tsv(src / rel)]
        else:
            lines = list(iter_corpus(src / rel)) if rel.endswith(".txt") else []
        files[rel] = {"dataset": dataset, "domain": domain, "sha256": hashlib.sha256(raw).hexdigest(),
                      "bytes": len(raw), "xz_bytes": xz.stat().st_size, "lines": len(lines),
                      "chars": sum(len(x) for x in lines), "licence": licence}
        print(f"{rel}: {len(raw):,} -> {xz.stat().st_size:,} bytes")
    manifest = {"name": "mixnu-builtin", "version": 1, "files": files}
    (OUT / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
