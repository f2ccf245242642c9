"""Issue #11 items 8 and 9 for every command: several values after one list flag, and one override
rule (defaults < --config YAML < flags given < --set). Each stage's entry function is replaced by one
that captures the config it was called with, so nothing runs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from mixnu.cli import main


class Captured(Exception):
    def __init__(self, cfg):
        self.cfg = cfg


def capture(monkeypatch, target: str) -> None:
    module, name = target.rsplit(".", 1)

    def fake(cfg, *args, **kwargs):
        raise Captured(cfg)

    monkeypatch.setattr(importlib.import_module(module), name, fake)


def config_of(monkeypatch, target: str, args: list) -> object:
    capture(monkeypatch, target)
    with pytest.raises(Captured) as exc:
        rc = main([str(a) for a in args])
        pytest.fail(f"the command did not reach {target} (exit {rc})")
    return exc.value.cfg


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    names = ("a.txt", "b.txt", "c.txt", "law_heldout.txt", "med_heldout.txt", "m1", "m2", "base", "tok", "run")
    out = {}
    for n in names:
        p = tmp_path / n
        if "." in n:
            p.write_text("가나다\n", encoding="utf-8")
        else:
            p.mkdir()
        out[n] = p
    return out


# ---- item 8: several values after one flag (what a shell glob gives) ------------------------------------

def test_tokenizer_extend_takes_several_corpus_files_after_one_flag(monkeypatch, files, tmp_path):
    a, b, c = files["a.txt"], files["b.txt"], files["c.txt"]
    cfg = config_of(monkeypatch, "mixnu.tokenizer.extend_tokenizer",
                    ["tokenizer", "extend", "--base", files["base"], "--corpus", a, b, c, "--out", tmp_path / "o"])
    assert [str(p) for p in cfg.corpus] == [str(a), str(b), str(c)] and str(cfg.out) == str(tmp_path / "o")


def test_tokenizer_compare_takes_several_tokenizers_and_texts(monkeypatch, files):
    cfg = config_of(monkeypatch, "mixnu.tokenizer.compare_tokenizers",
                    ["tokenizer", "compare", "--tokenizer", f"x={files['m1']}", f"y={files['m2']}",
                     "--text", files["a.txt"], files["b.txt"]])
    assert list(cfg.tokenizers) == ["x", "y"] and [p.name for p in cfg.texts] == ["a.txt", "b.txt"]


def test_train_takes_several_data_and_eval_data_files(monkeypatch, files, tmp_path):
    cfg = config_of(monkeypatch, "mixnu.train.train",
                    ["train", "--model", files["m1"], "--data", files["a.txt"], files["b.txt"], "--eval-data",
                     files["c.txt"], files["law_heldout.txt"], "--out", tmp_path / "o", "--set", "steps=3", "lr=0.01"])
    assert [p.name for p in cfg.data] == ["a.txt", "b.txt"]
    assert [p.name for p in cfg.eval_data] == ["c.txt", "law_heldout.txt"]
    assert (cfg.steps, cfg.lr) == (3, 0.01)  # --set also takes several


def test_route_takes_several_data_files(monkeypatch, files, tmp_path):
    cfg = config_of(monkeypatch, "mixnu.train.train_router",
                    ["route", "--model", files["m1"], "--data", files["a.txt"], files["b.txt"], files["c.txt"],
                     "--out", tmp_path / "o"])
    assert [p.name for p in cfg.data] == ["a.txt", "b.txt", "c.txt"]


@pytest.mark.parametrize(("command", "target"), [("routing", "mixnu.routing.routing_report"),
                                                   ("ppl", "mixnu.perplexity.evaluate_perplexity")])
def test_routing_and_ppl_take_several_data_files(monkeypatch, files, command, target):
    args = [command, "--model", files["m1"], "--data", files["law_heldout.txt"], f"med={files['med_heldout.txt']}"]
    if command == "ppl":
        args += ["--model", files["m2"]]  # a repeated flag adds to the list too
    cfg = config_of(monkeypatch, target, args)
    assert {k: v.name for k, v in cfg.data.items()} == {"law": "law_heldout.txt", "med": "med_heldout.txt"}
    if command == "ppl":
        assert [p.name for p in cfg.models] == ["m1", "m2"]


def test_ppl_takes_several_models_after_one_flag(monkeypatch, files):
    cfg = config_of(monkeypatch, "mixnu.perplexity.evaluate_perplexity",
                    ["ppl", "--model", files["m1"], files["m2"], "--data", files["a.txt"]])
    assert [p.name for p in cfg.models] == ["m1", "m2"]


def test_merge_takes_several_experts_and_a_config_may_follow(monkeypatch, files, tmp_path):
    yml = tmp_path / "merge.yaml"
    yml.write_text(yaml.safe_dump({"base": str(files["base"]), "out": str(tmp_path / "o"), "dtype": "float16"}))
    cfg = config_of(monkeypatch, "mixnu.merge.merge_experts",
                    ["merge", "--expert", f"x={files['m1']}", f"y={files['m2']}", yml])
    assert [e.name for e in cfg.experts] == ["x", "y"] and cfg.dtype == "float16"


def test_generate_takes_several_models(monkeypatch, files, tmp_path):
    cfg = config_of(monkeypatch, "mixnu.eval.generate.generate",
                    ["generate", "--model", f"a={files['m1']}", f"b={files['m2']}", "--out", tmp_path / "run"])
    assert [m.name for m in cfg.models] == ["a", "b"]


def test_expand_list_options_rules():
    from typer.main import get_command

    from mixnu.cli import app
    from mixnu.cli._common import expand_list_options

    root = get_command(app)
    ext = ["tokenizer", "extend"]
    assert expand_list_options(root, [*ext, "--corpus=a", "b", "--out", "o", "--force"]) == \
        [*ext, "--corpus=a", "--corpus", "b", "--out", "o", "--force"]
    assert expand_list_options(root, [*ext, "--corpus", "a", "--", "b"]) == [*ext, "--corpus", "a", "--", "b"]
    # a keyed option (metavar KEY=VALUE) stops at a value without '='
    assert expand_list_options(root, ["eval", "judge", "--set", "a=1", "b=2", "run"]) == \
        ["eval", "judge", "--set", "a=1", "--set", "b=2", "run"]
    assert expand_list_options(root, ["--version"]) == ["--version"]


# ---- item 9: one override rule, tested once per command ---------------------------------------------------

def _rule_cases(f: dict[str, Path], tmp: Path) -> dict[str, tuple]:
    """command -> (entry function, args before the config, how the config is passed, field, YAML value,
    flag args, flag value, --set value, extra YAML keys)."""
    o = str(tmp / "o")
    return {
        "tokenizer extend": ("mixnu.tokenizer.extend_tokenizer",
                             ["tokenizer", "extend", "--base", f["base"], "--corpus", f["a.txt"], "--out", o],
                             "--config", "vocab_size", 40000, ["--vocab-size", "41000"], 41000, 42000, {}),
        "expand": ("mixnu.expand.expand_model", ["expand", "--model", f["m1"], "--tokenizer", f["tok"], "--out", o],
                   "--config", "init", "mean", ["--init", "random"], "random", "subword-mean", {}),
        "train": ("mixnu.train.train", ["train", "--model", f["m1"], "--data", f["a.txt"], "--out", o],
                  "--config", "steps", 7, ["--steps", "8"], 8, 9, {}),
        "route": ("mixnu.train.train_router", ["route", "--model", f["m1"], "--data", f["a.txt"], "--out", o],
                  "--config", "steps", 7, ["--steps", "8"], 8, 9, {}),
        "routing": ("mixnu.routing.routing_report", ["routing", "--model", f["m1"], "--data", f["a.txt"]],
                    "--config", "batch_size", 3, ["--batch-size", "4"], 4, 5, {}),
        "ppl": ("mixnu.perplexity.evaluate_perplexity", ["ppl", "--model", f["m1"], "--data", f["a.txt"]],
                "--config", "batch_size", 3, ["--batch-size", "4"], 4, 5, {}),
        "merge": ("mixnu.merge.merge_experts", ["merge"], "positional", "dtype", "float16", ["--dtype", "float32"],
                  "float32", "bfloat16",
                  {"base": str(f["base"]), "out": o, "experts": [{"name": "x", "path": str(f["m1"])},
                                                                  {"name": "y", "path": str(f["m2"])}]}),
        "generate": ("mixnu.eval.generate.generate", ["generate"], "positional", "samples", 2, ["--samples", "3"], 3, 4,
                     {"out": o, "models": [{"name": "a", "path": str(f["m1"])}]}),
        "eval judge": ("mixnu.eval.judge.judge", ["eval", "judge", f["run"]], "--config", "concurrency", 2,
                       ["--concurrency", "3"], 3, 4, {}),
        "eval run": ("mixnu.eval.run.run_eval", ["eval", "run"], "positional", "out", "from-yaml",
                     ["--out", "from-flag"], "from-flag", "from-set", {"generate": {}}),
        "eval annotate": ("mixnu.eval.annotate.serve_annotation", ["eval", "annotate", f["run"]], "--config", "port",
                          9001, ["--port", "9002"], 9002, 9003, {}),
        "demo": ("mixnu.demo.run_demo", ["demo"], "--config", "out", "from-yaml", ["--out", "from-flag"],
                 "from-flag", "from-set", {}),
    }


COMMANDS = ["tokenizer extend", "expand", "train", "route", "routing", "ppl", "merge", "generate", "eval judge",
            "eval run", "eval annotate", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_defaults_then_yaml_then_flags_then_set(monkeypatch, files, tmp_path, command):
    target, args, how, field, in_yaml, flag, in_flag, in_set, extra = _rule_cases(files, tmp_path)[command]
    yml = tmp_path / "cfg.yaml"
    yml.write_text(yaml.safe_dump({**extra, field: in_yaml}), encoding="utf-8")
    cfg_args = [yml] if how == "positional" else ["--config", yml]

    def value(extra_args: list) -> object:
        got = getattr(config_of(monkeypatch, target, [*args, *cfg_args, *extra_args]), field)
        return str(got) if isinstance(got, Path) else got

    assert value([]) == in_yaml                                    # the YAML beats the command's default
    assert value(flag) == in_flag                                  # an explicit flag beats the YAML
    assert value([*flag, "--set", f"{field}={in_set}"]) == in_set  # --set beats both


def test_annotate_refuses_an_explicit_seed_that_differs_from_the_stored_sample(tmp_path, run_cli):
    from mixnu.errors import ConfigError
    from mixnu.eval.annotate import AnnotateConfig, open_session
    from tests.eval.conftest import make_run

    run = make_run(tmp_path / "run", n=6)
    open_session(AnnotateConfig(run_dir=run, sample=3, seed=1))
    assert open_session(AnnotateConfig(run_dir=run)).seed == 1  # no --seed: continue the stored sample
    with pytest.raises(ConfigError, match=r"seed 1"):
        open_session(AnnotateConfig(run_dir=run, seed=5))  # an explicit --seed 5 is not silently ignored
