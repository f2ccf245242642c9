"""The annotation page in a real headless Chromium (the system's, driven by Playwright for Python).

Scores items with keys and clicks, reloads, kills the server with SIGKILL and restarts it, and
checks nothing was lost; proves model output containing <script>/<img onerror> runs nothing.
A screenshot is saved to pytest's tmp dir and copied to `test-artifacts/annotate-page.png`.

Chromium and a Korean font are required, not optional: `make browser-deps` installs Debian's
`chromium` and `fonts-noto-cjk` (as root), so a missing browser or font fails with the command that
installs it. The browser is `$MIXNU_CHROMIUM`, else `chromium` on PATH, else Playwright's own build
if a user elsewhere ran `playwright install chromium` (never run on this project's machines).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.eval.annotate_helpers import MODELS, XSS, write_run
from tests.eval.test_annotate import start_server

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def text(pid: str, model: str) -> str:
    if model == "qwen":
        return f"모델 답변 {pid}. {XSS} 끝."
    if model == "llama2":
        return "올해 수능이\u200b\u200b 어려웠다는\u200b 뜻입니다. " * 2
    return f"올해 수능은 매우 어려웠다는 뜻입니다 ({pid}).\n두 번째 줄."


def chromium_path(playwright) -> str:
    """The system's Chromium, else Playwright's own build; `pytest.fail` with the install command."""
    for found in (os.environ.get("MIXNU_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if found and Path(found).exists():
            return found
    own = playwright.chromium.executable_path
    if own and Path(own).exists():
        return own
    pytest.fail("no chromium found: the browser test needs it; `make browser-deps` (root on Debian) or "
                "`sudo apt-get install chromium fonts-noto-cjk`; or set MIXNU_CHROMIUM to a Chromium binary",
                pytrace=False)


@pytest.fixture(scope="module")
def browser():
    fc_list = shutil.which("fc-list")  # fontconfig: what Chromium on Linux finds fonts with
    fonts = subprocess.run([fc_list, ":lang=ko", "family"], capture_output=True, text=True).stdout if fc_list else ""
    if not fonts.strip():
        pytest.fail("no Korean font: the page would show Korean as empty boxes; install fonts-noto-cjk "
                    "(`make browser-deps` as root, or `sudo apt-get install fonts-noto-cjk`)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(p), args=ARGS)
        yield b
        b.close()


def row(page, letter: str, crit: str):
    return page.locator(f'.score-row[data-letter="{letter}"][data-criterion="{crit}"]')


def selected(page) -> dict[tuple[str, str], int]:
    """{(letter, criterion): value} of the selected buttons on the current item."""
    got = page.eval_on_selector_all(
        ".score-row", "rows => rows.map(r => [r.dataset.letter, r.dataset.criterion, "
                      "(r.querySelector('button.selected') || {dataset: {}}).dataset.value])")
    return {(a, c): int(v) for a, c, v in got if v}


def assert_no_script_ran(page) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.title() == "mixnu · human verification"
    assert page.locator(".response-text script, .response-text img, #prompt *:not(.invisible)").count() == 0
    texts = page.eval_on_selector_all(".response-text", "els => els.map(e => e.textContent)")
    assert any("<script>window.__pwned = 1</script>" in t and "onerror=" in t for t in texts), texts


CRITS = ("fluency", "relevance", "accuracy")


def test_annotation_page_in_chromium(browser, tmp_path: Path):
    from playwright.sync_api import expect

    run = write_run(tmp_path / "run", per_kind=1, text=text)  # 5 items, one per category
    proc, url = start_server(run, tmp_path / "server1.log", "--sample", "5", "--annotator", "alice")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(url)
        expect(page.locator("#progress-text")).to_have_text("0 / 5 done", timeout=15000)
        expect(page.locator("#position")).to_have_text("Item 1 of 5")
        assert_no_script_ran(page)
        assert page.locator(".invisible", has_text="U+200B").count() >= 3  # zero-width spaces made visible
        expect(page.locator("#item-id")).not_to_have_text("")
        first_item = page.locator("#item-id").text_content()

        # Item 1 with the keyboard, typed fast: focus moves on at once, saves arrive later.
        keys = [3, 4, 5, 2, 3, 4, 1, 2, 3]
        for k in keys:
            page.keyboard.press(str(k))
        want1 = {(L, c): k for (L, c), k in zip([(L, c) for L in "ABC" for c in CRITS], keys, strict=True)}
        expect(page.locator("button.score.selected")).to_have_count(9)
        assert selected(page) == want1
        expect(page.locator("#status")).to_contain_text("Item complete")
        page.keyboard.press("7")
        expect(page.locator("#error")).to_be_visible()
        expect(page.locator("#error")).to_contain_text("7 is not a score")
        page.keyboard.press("Enter")
        expect(page.locator("#position")).to_have_text("Item 2 of 5")
        expect(page.locator("#progress-text")).to_have_text("1 / 5 done")

        # Item 2 with the mouse.
        want2 = {}
        for i, (L, c) in enumerate((L, c) for L in "ABC" for c in CRITS):
            v = 1 + (i * 2) % 5
            row(page, L, c).locator(f'button[data-value="{v}"]').click()
            want2[(L, c)] = v
        expect(page.locator("button.score.selected")).to_have_count(9)
        assert selected(page) == want2
        page.locator("#next").click()
        expect(page.locator("#position")).to_have_text("Item 3 of 5")

        # Item 3: two scores, skip it, come back: the scores and the skip are shown.
        row(page, "A", "fluency").locator('button[data-value="5"]').click()
        page.keyboard.press("4")  # focus moved to A relevance
        expect(page.locator("button.score.selected")).to_have_count(2)
        page.keyboard.press("s")
        expect(page.locator("#position")).to_have_text("Item 4 of 5")
        expect(page.locator("#progress-text")).to_have_text("2 / 5 done · 1 skipped")
        page.keyboard.press("b")
        expect(page.locator("#position")).to_have_text("Item 3 of 5")
        expect(page.locator("#skipped-flag")).to_be_visible()
        assert selected(page) == {("A", "fluency"): 5, ("A", "relevance"): 4}

        # A score the server rejects (the request is altered on its way) is shown, not saved.
        def to_nine(route):
            route.continue_(post_data=route.request.post_data.replace('"score":3', '"score":9'))

        page.route("**/api/score", to_nine)
        row(page, "B", "accuracy").locator('button[data-value="3"]').click()
        expect(page.locator("#error")).to_contain_text("score 9 rejected: scores are whole numbers from 1 to 5")
        page.unroute("**/api/score")
        assert ("B", "accuracy") not in selected(page)

        # Reload: same item, same scores, same progress.
        page.reload()
        expect(page.locator("#position")).to_have_text("Item 3 of 5", timeout=15000)
        expect(page.locator("#progress-text")).to_have_text("2 / 5 done · 1 skipped")
        assert selected(page) == {("A", "fluency"): 5, ("A", "relevance"): 4}
        shot = tmp_path / "annotate-page.png"
        page.screenshot(path=str(shot), full_page=True)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "annotate-page.png")
        print(f"screenshot: {shot} (copied to {ARTIFACTS / 'annotate-page.png'})")

        # A second annotator sees the same sample from the start, with nothing of alice's.
        other = ctx.new_page()
        other.goto(url.replace("annotator=alice", "annotator=bob"))
        expect(other.locator("#progress-text")).to_have_text("0 / 5 done", timeout=15000)
        expect(other.locator("#item-id")).to_have_text(first_item)  # waits for the item to render
        assert selected(other) == {}
        other.close()

        # kill -9 the server: the page says the score was not saved; a restart loses nothing.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        row(page, "C", "accuracy").locator('button[data-value="2"]').click()
        expect(page.locator("#error")).to_contain_text("server is unreachable")
        proc, url = start_server(run, tmp_path / "server2.log", "--annotator", "alice")
        page.goto(url)
        expect(page.locator("#position")).to_have_text("Item 3 of 5", timeout=15000)
        expect(page.locator("#progress-text")).to_have_text("2 / 5 done · 1 skipped")
        assert selected(page) == {("A", "fluency"): 5, ("A", "relevance"): 4}
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#position")).to_have_text("Item 2 of 5")
        expect(page.locator("button.score.selected")).to_have_count(9)
        assert selected(page) == want2
        page.keyboard.press("b")
        expect(page.locator("#position")).to_have_text("Item 1 of 5")
        expect(page.locator("button.score.selected")).to_have_count(9)
        assert selected(page) == want1
        assert_no_script_ran(page)
    finally:
        proc.terminate()
        proc.wait()
        ctx.close()
    con = sqlite3.connect(run / "annotations.sqlite")
    assert con.execute("SELECT COUNT(*) FROM scores WHERE annotator='alice'").fetchone()[0] == 9 + 9 + 2
    assert con.execute("SELECT COUNT(*) FROM scores WHERE score NOT BETWEEN 1 AND 5").fetchone()[0] == 0
    assert {r[0] for r in con.execute("SELECT model FROM scores")} <= set(MODELS)
    assert errors == []
    assert not [u for u in requests if re.search(r"/x($|\?)", u)], "the <img src=x> of a response was loaded"


def test_markup_in_model_output_runs_nothing_even_without_csp(browser, tmp_path: Path):
    """With the page's Content-Security-Policy bypassed, text rendering alone must keep scripts inert."""
    from playwright.sync_api import expect

    run = write_run(tmp_path / "run", per_kind=1, text=text)
    proc, url = start_server(run, tmp_path / "server.log", "--sample", "5", "--annotator", "mallory")
    ctx = browser.new_context(bypass_csp=True)
    page = ctx.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(url)
        for i in range(1, 6):
            expect(page.locator("#position")).to_have_text(f"Item {i} of 5", timeout=15000)
            page.wait_for_timeout(100)  # an onerror handler would fire within this
            assert_no_script_ran(page)
            page.keyboard.press("s")
        expect(page.locator("#finished")).to_be_visible()
    finally:
        proc.terminate()
        proc.wait()
        ctx.close()
    assert not [u for u in requests if re.search(r"/x($|\?)", u)]
