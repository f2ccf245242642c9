"""The demo runs on a `--data` folder and refuses a folder without domain files."""

from __future__ import annotations

import json


def test_demo_on_small_data_folder(tmp_path, corpora, run_cli):
    data = tmp_path / "data"
    data.mkdir()
    for domain in ("law", "daily"):
        lines = corpora[domain].read_text(encoding="utf-8").splitlines()[:300]
        (data / f"{domain}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc, _, err = run_cli("demo", "--data", data, "--out", tmp_path / "out", "--quiet")
    assert rc == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["corpus"]) == {"law", "daily"}
    assert results["corpus"]["law"]["lines"] == 300
    assert "## Wall time per step" in (tmp_path / "out" / "summary.md").read_text()


def test_demo_refuses_folder_without_domain_files(tmp_path, run_cli):
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("demo", "--data", tmp_path / "empty", "--out", tmp_path / "out")
    assert rc == 1 and "no domain files" in err
    assert not (tmp_path / "out").exists()
