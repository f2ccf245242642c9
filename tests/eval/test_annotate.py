"""The annotation store, sample and web app (real HTTP on 127.0.0.1, no browser; see test_annotate_browser)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from mixnu.errors import ConfigError, DataError
from mixnu.eval.annotate import (
    AnnotateConfig,
    AnnotationItem,
    ShownResponse,
    create_app,
    draw_sample,
    export_annotations,
    load_items,
    open_session,
)
from mixnu.eval.annotate.app import make_server
from mixnu.eval.annotate.store import AnnotationStore
from tests.eval.annotate_helpers import MODELS, judgment_orders, write_run


def neutral_text(pid: str, model: str) -> str:
    """Responses that do not contain the model's name (so the blinding test can look for names)."""
    return f"답변 {MODELS.index(model)} ({pid}): 올해 수능이 매우 어려웠다는 뜻입니다."


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", per_kind=2, text=neutral_text)


@pytest.fixture
def server(run: Path):
    """The app on a real ThreadingHTTPServer (port 0) in a thread; yields (port, app, session)."""
    session = open_session(AnnotateConfig(run_dir=run, sample=6))
    app = create_app(session.store, session.items, max_body=2048)
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv.server_address[1], app, session
    srv.shutdown()
    srv.server_close()


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, skip_length: bool = False) -> tuple[int, dict[str, str], bytes]:
    """A raw request: the path is sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    if body is not None and not skip_length:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def post(port: int, path: str, obj, **kw) -> tuple[int, dict]:
    status, _, data = request(port, "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"}, **kw)
    return status, json.loads(data)


def test_items_follow_the_judgment_letter_order(run: Path):
    items = load_items(run)
    orders = judgment_orders(run)
    assert len(items) == 10
    for it in items.values():
        assert [r.model for r in it.responses] == orders[it.prompt_id]
        assert [r.letter for r in it.responses] == ["A", "B", "C"]
    hallu = next(it for it in items.values() if it.category == "hallucination")
    assert dict(hallu.notes)["confusable"].startswith("불수능")


def _fake_items(sizes: dict[str, int]) -> dict[str, AnnotationItem]:
    out = {}
    for cat, n in sizes.items():
        for i in range(n):
            iid = f"{cat}-{i:03d}/0"
            out[iid] = AnnotationItem(iid, iid[:-2], 0, cat, cat, "p", (), (ShownResponse("A", "m", "t"),))
    return out


def test_sample_is_stratified_seeded_and_proportional():
    sizes = {"language": 2, "style": 4, "domain": 10, "localization": 8, "hallucination": 6}
    items = _fake_items(sizes)
    a = draw_sample(items, 10, seed=3)
    assert [r.item_id for r in a] == [r.item_id for r in draw_sample(items, 10, seed=3)]
    assert [r.item_id for r in a] != [r.item_id for r in draw_sample(items, 10, seed=4)]
    counts = Counter(r.category for r in a)
    assert sum(counts.values()) == 10 and len({r.item_id for r in a}) == 10
    for cat, size in sizes.items():
        assert 1 <= counts[cat] and abs(counts[cat] - 10 * size / 30) < 1, counts
    # shuffled across categories, not grouped
    assert [r.category for r in a] != sorted(r.category for r in a)
    assert len(draw_sample(items, 100, seed=0)) == 30


def test_store_saves_each_score_at_once_in_wal_mode(tmp_path: Path):
    store = AnnotationStore(tmp_path / "a.sqlite")
    store.set_score("alice", "x/0", "A", "m1", "fluency", 4)
    # A fresh connection (another process, after a crash) sees it without any close/flush.
    con = sqlite3.connect(tmp_path / "a.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT score FROM scores").fetchall() == [(4,)]
    store.set_score("alice", "x/0", "A", "m1", "fluency", 2)  # change of mind overwrites
    store.set_score("bob", "x/0", "A", "m1", "fluency", 5)
    assert sorted(con.execute("SELECT annotator, score FROM scores").fetchall()) == [("alice", 2), ("bob", 5)]
    for bad in (0, 6, True, 3.0):
        with pytest.raises(ValueError):
            store.set_score("alice", "x/0", "A", "m1", "fluency", bad)
    with pytest.raises(ValueError):
        store.set_score("alice", "x/0", "A", "m1", "style", 3)
    store.set_cursor("alice", 7)
    assert AnnotationStore(tmp_path / "a.sqlite").get_cursor("alice") == 7
    assert store.get_cursor("bob") == 0


def test_sample_is_stored_once_and_shared(run: Path):
    with pytest.raises(ConfigError, match="--sample"):
        open_session(AnnotateConfig(run_dir=run))
    first = open_session(AnnotateConfig(run_dir=run, sample=5, seed=1, annotator="alice"))
    again = open_session(AnnotateConfig(run_dir=run, annotator="bob"))
    assert first.created and not again.created
    assert [i.item_id for i in first.items] == [i.item_id for i in again.items]
    assert len({i.category for i in first.items}) == 5
    with pytest.raises(ConfigError, match="already holds a sample of 5"):
        open_session(AnnotateConfig(run_dir=run, sample=8, seed=1))
    with pytest.raises(DataError, match="annotator name"):
        open_session(AnnotateConfig(run_dir=run, annotator="<b>x</b>"))


def test_page_and_security_headers(server):
    port, _, _ = server
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and b"/static/app.js" in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, body = request(port, "GET", "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert b"innerHTML" not in body.replace(b"never innerHTML", b"")  # the page never parses text as HTML


def test_item_is_blind_to_models_and_judge(server, run: Path):
    port, _, session = server
    status, _, body = request(port, "GET", "/api/item?annotator=alice&position=0")
    assert status == 200
    item = json.loads(body)
    text = body.decode()
    for secret in (*MODELS, "gpt-4o", "judge_model", "rotation"):
        assert secret not in text
    assert [r["letter"] for r in item["responses"]] == ["A", "B", "C"]
    first = session.items[0]
    assert [r["text"] for r in item["responses"]] == [r.text for r in first.responses]
    assert item["prompt"] == first.prompt and item["category"] == first.category


def test_scores_are_validated_and_saved(server, run: Path):
    port, app, session = server
    item = session.items[0]
    base = {"annotator": "alice", "item": item.item_id, "letter": "B", "criterion": "relevance"}
    status, out = post(port, "/api/score", {**base, "score": 4})
    assert status == 200 and out["saved"] and not out["item_complete"]
    model_b = item.responses[1].model
    rows = sqlite3.connect(run / "annotations.sqlite").execute("SELECT annotator, model, criterion, score FROM scores")
    assert rows.fetchall() == [("alice", model_b, "relevance", 4)]
    for bad, msg in ((0, "1 to 5"), (6, "1 to 5"), (-3, "1 to 5"), ("3", "integer"), (3.5, "integer"),
                     (True, "integer"), (None, "integer")):
        status, out = post(port, "/api/score", {**base, "score": bad})
        assert status == 400 and msg in out["error"], (bad, out)
    for patch, msg in (({"letter": "Z"}, "no response Z"), ({"letter": "AB"}, "letter"),
                       ({"criterion": "style"}, "criterion"), ({"item": "nope/0"}, "not in the sample"),
                       ({"annotator": "<img>"}, "annotator name"), ({"annotator": "x" * 41}, "annotator"),
                       ({"extra": 1}, "extra"), ({"annotator": None}, "annotator")):
        status, out = post(port, "/api/score", {**base, "score": 2, **patch})
        assert status in (400, 404) and msg in out["error"], (patch, out)
    del base["letter"]
    status, out = post(port, "/api/score", {**base, "score": 2})
    assert status == 400 and "letter" in out["error"]
    assert app.store.item_scores("alice", item.item_id) == {"B": {"relevance": 4}}
    # completing the item counts it as done
    for r in item.responses:
        for c in ("fluency", "relevance", "accuracy"):
            status, out = post(port, "/api/score", {"annotator": "alice", "item": item.item_id, "letter": r.letter,
                                                    "criterion": c, "score": 3})
    assert out["item_complete"] and out["done"] == 1 and out["total"] == 6


def test_request_bodies_are_limited_and_must_be_json(server):
    port, _, session = server
    ok = {"annotator": "alice", "item": session.items[0].item_id, "letter": "A", "criterion": "fluency", "score": 3}
    big = json.dumps({**ok, "pad": "x" * 5000}).encode()
    status, _, body = request(port, "POST", "/api/score", big, {"Content-Type": "application/json"})
    assert status == 413 and b"2048 bytes" in body
    status, _, _ = request(port, "POST", "/api/score", json.dumps(ok).encode(), {"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = request(port, "POST", "/api/score", b"{}", {"Content-Type": "application/json"}, skip_length=True)
    assert status == 411
    status, _, _ = request(port, "POST", "/api/score", b"3\r\n{}}\r\n0\r\n\r\n",
                           {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}, skip_length=True)
    assert status == 411
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        status, _, _ = request(port, "POST", "/api/score", raw, {"Content-Type": "application/json"})
        assert status == 400
    status, _, _ = request(port, "PUT", "/api/score", b"{}", {"Content-Type": "application/json"})
    assert status == 501
    status, _, _ = request(port, "GET", "/api/score")
    assert status == 405


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/../../../../../../etc/passwd", "/static/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/..%252f..%252fetc%252fpasswd", "/%252e%252e/etc/passwd", "//etc/passwd", "/static//etc/passwd",
    "/static/..\\..\\etc\\passwd", "/etc/passwd", "/responses.jsonl", "/judgments.jsonl", "/suite.yaml",
    "/annotations.sqlite", "/static/../responses.jsonl", "/static/app.js/../../judgments.jsonl",
    "/api/../responses.jsonl", "/static/%2e%2e/annotations.sqlite", "/static/app.js%00.png",
    "/static/", "/static", "/index.html/..",
])
def test_no_file_outside_the_fixed_set_is_reachable(server, path: str):
    port, _, _ = server
    status, _, body = request(port, "GET", path)
    assert status == 404, (path, status)
    assert b"root:" not in body and b"prompt_id" not in body and b"SQLite" not in body


def test_foreign_host_header_is_refused(server):
    port, _, _ = server
    status, _, body = request(port, "GET", "/api/state?annotator=alice", headers={"Host": "evil.example:80"})
    assert status == 421 and b"Host" in body
    status, _, _ = request(port, "GET", "/api/state?annotator=alice", headers={"Host": f"localhost:{port}"})
    assert status == 200


def test_navigation_and_skips_are_remembered(server):
    port, app, session = server
    status, state = request(port, "GET", "/api/state?annotator=bob")[0], None
    assert status == 200
    status, out = post(port, "/api/navigate", {"annotator": "bob", "position": 2, "skip": session.items[1].item_id})
    assert status == 200 and out["skipped"] == 1
    state = json.loads(request(port, "GET", "/api/state?annotator=bob")[2])
    assert state["cursor"] == 2 and state["skipped"] == 1 and state["first_open"] == 0
    assert json.loads(request(port, "GET", "/api/state?annotator=carol")[2])["cursor"] == 0
    status, out = post(port, "/api/navigate", {"annotator": "bob", "position": 99})
    assert status == 400 and "outside" in out["error"]
    assert request(port, "GET", "/api/item?annotator=bob&position=6")[0] == 404
    assert request(port, "GET", "/api/item?annotator=bob&position=x")[0] == 400
    assert request(port, "GET", "/api/state")[0] == 400


def test_export_csv_and_jsonl(server, run: Path, tmp_path: Path, run_cli):
    port, _, session = server
    for who, score in (("alice", 2), ("bob", 5)):
        post(port, "/api/score", {"annotator": who, "item": session.items[0].item_id, "letter": "A",
                                  "criterion": "accuracy", "score": score})
    res = export_annotations(run, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
    assert res.rows == 2 and lines[0].startswith("annotator,item_id,prompt_id,sample,category,letter,model")
    assert {ln.split(",")[0] for ln in lines[1:]} == {"alice", "bob"}
    rc, _, err = run_cli("eval", "annotate", run, "--export", tmp_path / "out.jsonl")
    assert rc == 0, err
    recs = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((r["annotator"], r["score"], r["model"]) for r in recs) == [
        ("alice", 2, session.items[0].responses[0].model), ("bob", 5, session.items[0].responses[0].model)]
    rc, _, err = run_cli("eval", "annotate", run, "--export", tmp_path / "out.xlsx")
    assert rc == 1 and "use .csv or .jsonl" in err and len(err.strip().splitlines()) == 1


def test_cli_user_errors_are_one_line(run_cli, tmp_path: Path, run: Path):
    rc, _, err = run_cli("eval", "annotate", tmp_path / "missing", "--sample", "3")
    assert rc == 1 and "run folder not found" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli("eval", "annotate", run)
    assert rc == 1 and "pass --sample N" in err
    (run / "responses.jsonl").write_text('{"prompt_id": "zzz", "sample": 0, "model": "m", "response": "r"}\n')
    rc, _, err = run_cli("eval", "annotate", run, "--sample", "3")
    assert rc == 1 and "'zzz' is not in suite.yaml" in err


def start_server(run: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`python -m mixnu eval annotate` in a subprocess on a free port; returns it and its URL."""
    fh = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "mixnu", "eval", "annotate", str(run), "--port", "0", *extra],
                            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "300"})
    fh.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "annotate at http://" in line:
                return proc, line.split("annotate at ")[1].split()[0]
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not start: {log.read_text()}")


def test_kill_9_loses_no_score(run: Path, tmp_path: Path):
    """A real server process, killed with SIGKILL right after answering: the score is on disk."""
    proc, url = start_server(run, tmp_path / "log1.txt", "--sample", "4", "--annotator", "alice")
    port = int(url.split(":")[2].split("/")[0])
    try:
        item = json.loads(request(port, "GET", "/api/item?annotator=alice&position=1")[2])
        status, _ = post(port, "/api/score", {"annotator": "alice", "item": item["item"], "letter": "C",
                                              "criterion": "accuracy", "score": 1})
        assert status == 200
        post(port, "/api/navigate", {"annotator": "alice", "position": 1})
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc, url = start_server(run, tmp_path / "log2.txt")
    port = int(url.split(":")[2].split("/")[0])
    try:
        state = json.loads(request(port, "GET", "/api/state?annotator=alice")[2])
        again = json.loads(request(port, "GET", "/api/item?annotator=alice&position=1")[2])
        assert state["cursor"] == 1 and again["scores"] == {"C": {"accuracy": 1}}
    finally:
        proc.terminate()
        proc.wait()
