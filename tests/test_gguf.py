"""GGUF in and out: `mixnu export gguf` with llama.cpp's vendored converter, `mixnu import-gguf`, `mixnu fetch`.

The export tests need llama.cpp's `convert_hf_to_gguf.py` (pure Python). They use `$MIXNU_LLAMA_CPP`
(a llama.cpp checkout or the llama-cpp-python sdist) when set; otherwise they fetch the
llama-cpp-python 0.3.36 sdist (77 MB) from PyPI with pip into `$MIXNU_CACHE/sdist` once (measured
2 min 20 s on the loaded 2-core box: pip also installs the sdist's build requirements to read its
metadata; later runs reuse the file). If that fails the tests fail and say why; they never skip.
Measured at load average ~4: the whole file 84 s; the MoE export 17 s and the dense export + import
round trip 26 s, plus ~35 s of fixtures (converter start-up imports torch and transformers each time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_tiny_llama
from tests.test_route import build_tiny_mixtral

SDIST = "llama_cpp_python-0.3.36.tar.gz"


@pytest.fixture(scope="session")
def llama_cpp_source() -> Path:
    """A llama.cpp converter source: $MIXNU_LLAMA_CPP, or the sdist from PyPI, cached."""
    from mixnu.gguf_export import cache_root

    if os.environ.get("MIXNU_LLAMA_CPP"):
        return Path(os.environ["MIXNU_LLAMA_CPP"])
    cache = cache_root() / "sdist"
    path = cache / SDIST
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
               "llama-cpp-python==0.3.36", "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not path.is_file():
            pytest.fail(f"could not fetch the llama-cpp-python sdist with pip (set MIXNU_LLAMA_CPP to a llama.cpp "
                        f"checkout to use one): {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return path


@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("dense"), llama2_tokenizer_dir, hidden=32, layers=1)


@pytest.fixture(scope="module")
def tiny_mixtral(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    return build_tiny_mixtral(tmp_path_factory.mktemp("moe"), llama2_tokenizer_dir)


@pytest.fixture(scope="module")
def dense_gguf(tmp_path_factory, tiny_dense, llama_cpp_source, run_cli_module) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "dense.gguf"
    rc, _, err = run_cli_module("export", "gguf", tiny_dense, out, "--llama-cpp", llama_cpp_source)
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def run_cli_module():
    from mixnu.cli import main

    return lambda *args: (main([str(a) for a in args]), "", "")


def _reader(path: Path):
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    tensors = {t.name: t for t in reader.tensors}
    return reader, fields, tensors


def test_export_tiny_mixtral_tensors_and_metadata(tmp_path, tiny_mixtral, llama_cpp_source, run_cli):
    from safetensors.torch import load_file

    out = tmp_path / "moe.gguf"
    rc, _, err = run_cli("export", "gguf", tiny_mixtral, out, "--llama-cpp", llama_cpp_source)
    assert rc == 0, err
    reader, fields, tensors = _reader(out)
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == 2
    assert fields["llama.expert_count"] == 4 and fields["llama.expert_used_count"] == 2
    assert fields["llama.embedding_length"] == 32
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == 32000
    # 3 stacked expert tensors + router per layer; values equal the HF ones (f32 export).
    hf = load_file(str(tiny_mixtral / "model.safetensors"))
    gate = next(k for k in hf if k.startswith("model.layers.1.") and k.endswith((".mlp.gate.weight",
                                                                                  "block_sparse_moe.gate.weight")))
    assert np.allclose(np.asarray(tensors["blk.1.ffn_gate_inp.weight"].data), hf[gate].numpy())
    downs = tensors["blk.0.ffn_down_exps.weight"]
    assert list(downs.data.shape) == [4, 32, 64]  # (experts, hidden, intermediate) as numpy sees it
    emb = np.asarray(tensors["token_embd.weight"].data)
    assert np.array_equal(emb, hf["model.embed_tokens.weight"].numpy())
    assert not any(n.startswith("blk.2.") for n in tensors)


def test_export_dense_then_import_round_trip(tmp_path, tiny_dense, dense_gguf, run_cli):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, fields, _ = _reader(dense_gguf)
    assert fields["general.architecture"] == "llama" and "llama.expert_count" not in fields
    back = tmp_path / "back"
    rc, _, err = run_cli("import-gguf", dense_gguf, back, "-q")
    assert rc == 0 and err == "", err  # --quiet: not even transformers' dequantizing / saving bars
    card = (back / "README.md").read_text()
    assert "sha256" in card and dense_gguf.name in card
    meta = json.loads((back / "mixnu_import.json").read_text())
    assert meta["file_type"] == "ALL_F32" and meta["dequantized"] is False  # an f32 GGUF loses nothing
    tok_cfg = json.loads((back / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "is_local" not in tok_cfg
    umask = os.umask(0)
    os.umask(umask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in back.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # weights readable like every other file
    orig = AutoModelForCausalLM.from_pretrained(tiny_dense).eval()
    model = AutoModelForCausalLM.from_pretrained(back).eval()
    tok, tok_back = AutoTokenizer.from_pretrained(tiny_dense), AutoTokenizer.from_pretrained(back)
    text = "대한민국의 주권은 국민에게 있다. The quick brown fox."
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    assert tok_back(text, add_special_tokens=False, return_tensors="pt").input_ids.tolist() == ids.tolist()
    # The GGUF says add_bos (Llama-2 does); the fixture's tokenizer.model-only folder adds none (a known
    # transformers quirk, NOTES.md): the ids agree, the BOS policy comes from the GGUF.
    assert tok_back.bos_token_id == tok.bos_token_id == 1
    with torch.no_grad():
        diff = (orig(ids).logits - model(ids).logits).abs().max().item()
    assert diff < 1e-4, diff


def test_import_refuses_an_unsupported_architecture(tmp_path, run_cli):
    from gguf import GGUFWriter

    path = tmp_path / "gpt2.gguf"
    writer = GGUFWriter(str(path), "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    rc, _, err = run_cli("import-gguf", path, tmp_path / "out")
    assert rc == 1
    assert err.strip().count("\n") == 0 and "architecture 'gpt2' is not supported" in err
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_non_gguf_file(tmp_path, run_cli):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    rc, _, err = run_cli("import-gguf", bad, tmp_path / "out")
    assert rc == 1 and "not a GGUF file" in err and err.strip().count("\n") == 0
    bad.write_bytes(b"GG")  # shorter than the magic
    rc, _, err = run_cli("import-gguf", bad, tmp_path / "out")
    assert rc == 1 and "not a GGUF file" in err and err.strip().count("\n") == 0
    bad.write_bytes(b"GGUF" + b"\x03\x00")  # the magic, then a cut header
    rc, _, err = run_cli("import-gguf", bad, tmp_path / "out")
    assert rc == 1 and "truncated or damaged GGUF file" in err and err.strip().count("\n") == 0


def test_a_bad_option_value_is_one_line(tmp_path, tiny_dense, dense_gguf, run_cli):
    rc, _, err = run_cli("export", "gguf", tiny_dense, tmp_path / "x.gguf", "--llama-cpp", tmp_path,
                         "--outtype", "q4_0")
    assert rc == 1 and err.strip().count("\n") == 0 and "outtype" in err and "'q4_0'" in err
    assert "Traceback" not in err
    rc, _, err = run_cli("import-gguf", dense_gguf, tmp_path / "y", "--dtype", "fp8")
    assert rc == 1 and err.strip().count("\n") == 0 and "dtype" in err and "'fp8'" in err


def test_export_without_a_converter_is_one_line(tmp_path, tiny_dense, run_cli):
    rc, _, err = run_cli("export", "gguf", tiny_dense, tmp_path / "x.gguf", "--llama-cpp", tmp_path)
    assert rc == 1 and "no llama.cpp converter" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "x.gguf").exists()


def test_find_converter_in_checkout_layouts(tmp_path):
    from mixnu.gguf_export import find_converter

    for sub in ("", "vendor/llama.cpp", "llama_cpp_python-9/vendor/llama.cpp"):
        root = tmp_path / sub.replace("/", "_") / "r"
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "convert_hf_to_gguf.py").write_text("")
        assert find_converter(root) == root / sub / "convert_hf_to_gguf.py"


def test_fetch_local_folder_and_bad_sources(tmp_path, tiny_dense, run_cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = run_cli("fetch", tiny_dense, tmp_path / "copy", "-q")
    assert rc == 0, err
    assert (tmp_path / "copy" / "config.json").is_file() and (tmp_path / "copy" / "mixnu_fetch.json").is_file()
    rc, _, err = run_cli("fetch", "nobody/no-such-model", tmp_path / "x")
    assert rc == 1 and "cannot resolve this model source" in err and "hub: skipped (HF_HUB_OFFLINE=1)" in err
    assert err.strip().count("\n") == 0
    monkeypatch.delenv("HF_HUB_OFFLINE")
    rc, _, err = run_cli("fetch", "nobody/no-such-model", tmp_path / "x", "--no-hub")
    assert rc == 1 and "hub: skipped (--no-hub)" in err and err.strip().count("\n") == 0
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("fetch", tmp_path / "empty", tmp_path / "y")
    assert rc == 1 and "no config.json" in err


def test_server_that_never_becomes_ready_is_stopped(tmp_path):
    from mixnu.llama_server import ServerNotReadyError, free_port, serve

    port = free_port()
    cmd = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(120)"]
    with pytest.raises(ServerNotReadyError, match="not ready after 2 s.*loading"):
        with serve(cmd, f"http://127.0.0.1:{port}/v1", tmp_path / "log.txt", ready_timeout_s=2):
            pass
    cmd = [sys.executable, "-c", "raise SystemExit('no model file')"]
    with pytest.raises(ServerNotReadyError, match="exited with code 1.*no model file"):
        with serve(cmd, f"http://127.0.0.1:{port}/v1", tmp_path / "log2.txt", ready_timeout_s=30):
            pass
