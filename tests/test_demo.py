"""`mixnu demo --fast` runs the whole recipe end to end on a small `--data` folder (the pipeline and
its outputs, not the targets, which need the full recipe); bad input gives one clear line."""

from __future__ import annotations

import json

import pytest

from mixnu.demo import DemoConfig


def _small_data(tmp_path, corpora, domains=("law", "daily"), lines=300):
    data = tmp_path / "data"
    data.mkdir()
    for domain in domains:
        text = corpora[domain].read_text(encoding="utf-8").splitlines()[:lines]
        (data / f"{domain}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    return data


def test_demo_fast_end_to_end(tmp_path, corpora, run_cli):
    data = _small_data(tmp_path, corpora)
    out = tmp_path / "out"
    rc, stdout, err = run_cli("demo", "--data", data, "--out", out, "--fast", "--quiet", "--json", "-",
                              "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
                              "--set", "model.seq_len=32", "--set", "eval.max_chars=300",
                              "--set", "tokenizer.vocab_size=33000", "--set", "keep_models=false")
    assert rc == 0, err
    printed = json.loads(stdout)
    results = json.loads((out / "results.json").read_text())
    rows = set(results["bits_per_char"])
    assert rows == {"base", "expert:law", "expert:daily", "weight-average",
                    "moe (data init, before router training)", "moe (random init, before router training)",
                    "moe (data init, after router training)", "dense (same steps)", "dense (same tokens)",
                    "sparse upcycling"}
    assert all(set(v) == {"law", "daily"} and all(x > 0 for x in v.values()) for v in results["bits_per_char"].values())
    # every target is evaluated (pass or not) with its numbers
    assert set(results["targets"]) == {"moe_beats_base_and_average", "moe_within_3pct_of_oracle",
                                       "min_expert_load_5pct", "experts_specialise", "moe_vs_baselines"}
    vs = results["targets"]["moe_vs_baselines"]
    assert set(vs) == {"dense (same steps)", "dense (same tokens)", "sparse upcycling"}
    for name, v in vs.items():  # the comparison is computed from the table's numbers
        moe, b = results["bits_per_char"]["moe (data init, after router training)"], results["bits_per_char"][name]
        assert v["every_domain"] == all(moe[d] < b[d] for d in moe)
        assert v["per_domain_pct"]["law"] == pytest.approx(100 * (moe["law"] / b["law"] - 1), abs=0.01)
    # fast: experts 2 steps, router stage 2 steps, batch 4 -> same steps 2 + 2, same tokens (2*2*4 + 2*4) / 4
    assert [results["train"][n]["steps"] for n in vs] == [4, 6, 2]
    cost = results["cost"]
    assert cost["sparse upcycling"] == cost["moe (data init, after router training)"]
    assert cost["dense (same steps)"]["active_params"] < cost["sparse upcycling"]["active_params"]
    assert printed["targets"] == results["targets"]
    routing = results["routing"]["moe (data init, after router training)"]
    assert len(routing["top1"]["law"]) == 2 and len(routing["top1"]["law"][0]) == 2  # 2 layers x 2 experts
    for step in ("tokenizer", "base", "expert:law", "expert:daily", "merge:data", "route", "evaluate"):
        assert results["steps"][step] >= 0
    tok_rows = results["tokenizers"]
    assert tok_rows[0]["vocab"] == 32000 and tok_rows[1]["vocab"] == 33000  # Llama-2, Llama-2 extended
    assert tok_rows[1]["pct_byte"] < tok_rows[0]["pct_byte"]
    if results["config"]["tokenizer"]["model_vocab"] == "korean":  # the tiny model's own tokenizer, third row
        assert tok_rows[2]["vocab"] <= results["config"]["tokenizer"]["korean_vocab_size"]
    assert set(results["generations"]) == rows and all(len(g) == 1 for g in results["generations"].values())
    summary = (out / "summary.md").read_text()
    assert "| MoE beats dense (same steps) on every domain | " in summary
    for section in ("## Held-out bits per character", "## Targets", "## Tokenizers", "## Wall time per step",
                    "## Generations"):
        assert section in summary
    from mixnu.datasets import fingerprint, heldout_files

    sha = fingerprint({d: data / f"{d}.txt" for d in ("daily", "law")},
                      {d: p for d, p in heldout_files().items() if d in ("daily", "law")})
    assert results["data"] == {"name": str(data.resolve()), "sha256": sha}  # which data it ran on
    assert f"Data: {data.resolve()} (sha256 `{sha}`)" in summary
    for png in ("routing_heatmap.png", "routing_layers.png", "bits_per_char.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "models").exists()  # keep_models=false
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp folder left


def test_demo_refuses_folder_without_domain_files(tmp_path, run_cli):
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("demo", "--data", tmp_path / "empty", "--out", tmp_path / "out")
    assert rc == 1 and "no domain files" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_demo_refuses_domain_file_too_small(tmp_path, corpora, run_cli):
    data = _small_data(tmp_path, corpora)
    (data / "daily.txt").write_text("안녕하세요\n", encoding="utf-8")
    rc, _, err = run_cli("demo", "--data", data, "--out", tmp_path / "out", "--fast", "--quiet",
                         "--set", "tokenizer.vocab_size=33000")
    assert rc == 1 and "fewer than one training sequence" in err and "daily.txt" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_demo_refuses_domain_without_heldout(tmp_path, corpora, run_cli):
    data = _small_data(tmp_path, corpora, domains=("law",))
    (data / "poetry.txt").write_text("시\n" * 10, encoding="utf-8")
    rc, _, err = run_cli("demo", "--data", data, "--out", tmp_path / "out")
    assert rc == 1 and "no held-out file for domain 'poetry'" in err


def test_demo_recipe_validates():
    from pathlib import Path

    from mixnu.config import load_config

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "toy" / "demo.yaml"
    cfg = load_config(DemoConfig, recipe)
    assert cfg.experts.trainable in ("all", "mlp") and cfg.route.trainable in ("router", "router_and_all")
    assert cfg.route.router_aux_loss_coef and cfg.merge.router_inits[0] == "data"
    with pytest.raises(Exception, match="unknown_key"):
        load_config(DemoConfig, recipe, ["unknown_key=1"])
