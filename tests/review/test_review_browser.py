"""The review page in a real browser: Debian's Chromium, headless, driven by Playwright against
the app served in-process (uvicorn on a free port).

One reviewer's session: accept with ``a``, reject with ``r``, edit with ``e`` (keys typed in the
textarea are text, not shortcuts) and save with Ctrl+Enter; a trace that writes ``<script>`` and
a question with an ``onerror`` image show as text and run nothing; a reload keeps the three
decisions; the export holds exactly the accepted and the edited item.

Needs the ``playwright`` package (the ``test`` extra) and Chromium at /usr/bin/chromium
(``apt-get install chromium``; scripts/test.sh installs both, and there the test must run:
it sets R1LAB_BROWSER_TESTS=required, which turns a missing browser into a failure).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from review_samples import SCRIPT, read_jsonl

from r1lab.review.app import create_app
from r1lab.review.items import load_items
from r1lab.review.store import DecisionStore
from r1lab.serve.server import Server

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()),
    None,
)
EDITED = "<think>\nI add 12 and 7 myself.\nThe sum is 19.\n</think>\n<answer>\n19\n</answer>"


@pytest.fixture
def browser():
    if CHROMIUM is None:
        why = (
            "Debian's Chromium is not installed (apt-get install chromium, as scripts/test.sh does)"
        )
        if os.environ.get("R1LAB_BROWSER_TESTS") == "required":
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright  # the test extra; never `playwright install`

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def test_a_review_session(browser, queue_file, tmp_path):
    from playwright.sync_api import expect

    items = load_items(queue_file)
    out = tmp_path / "reviewed.jsonl"
    app = create_app(items, DecisionStore(tmp_path / "d.sqlite"), out, source=str(queue_file))
    with Server(app, port=0) as server:
        page = browser.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{server.port}/")
        position, badge = page.locator("#position"), page.locator("#decision")
        progress = page.locator("#progress")
        expect(position).to_have_text("item 1 of 5")
        expect(badge).to_have_text("undecided")

        page.keyboard.press("a")  # accept p0, on to p1
        expect(position).to_have_text("item 2 of 5")
        page.keyboard.press("r")  # reject p1, on to p2
        expect(position).to_have_text("item 3 of 5")
        expect(progress).to_have_text("2 / 5 decided · 1 accepted · 0 edited · 1 rejected")

        page.keyboard.press("e")
        editor = page.locator("#edit-text")
        expect(editor).to_be_visible()
        expect(editor).to_be_focused()
        expect(editor).to_have_value(items[2].rewritten)  # the "e" was not typed into it
        page.keyboard.type(" a r j k")  # shortcuts are text while typing
        expect(position).to_have_text("item 3 of 5")
        expect(editor).to_have_value(items[2].rewritten + " a r j k")
        editor.fill(EDITED)
        page.keyboard.press("Control+Enter")  # save: edited, on to p3
        expect(position).to_have_text("item 4 of 5")
        expect(progress).to_have_text("3 / 5 decided · 1 accepted · 1 edited · 1 rejected")

        # p3 writes a script in its trace and an onerror image in its question: text only
        expect(page.locator("#rewritten")).to_contain_text(SCRIPT)
        expect(page.locator("#question")).to_contain_text('<img src=x onerror="window.__pwned')
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("#main script, #main img").count() == 0

        page.reload()  # the item shown is in the URL: back on p3, decisions kept
        expect(position).to_have_text("item 4 of 5")
        expect(progress).to_have_text("3 / 5 decided · 1 accepted · 1 edited · 1 rejected")
        page.keyboard.press("k")
        expect(position).to_have_text("item 3 of 5")
        expect(badge).to_have_text("edited")
        expect(page.locator("#edited")).to_have_text(EDITED)
        page.keyboard.press("ArrowLeft")
        expect(position).to_have_text("item 2 of 5")
        expect(badge).to_have_text("rejected")
        page.keyboard.press("k")
        expect(position).to_have_text("item 1 of 5")
        expect(badge).to_have_text("accepted")
        page.keyboard.press("u")  # the next undecided: p3
        expect(position).to_have_text("item 4 of 5")

        page.locator("#export").click()
        expect(page.locator("#status")).to_have_text(f"exported 2 examples to {out}")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert errors == []
    assert [(e["id"], e["response"], e["review"]) for e in read_jsonl(out)] == [
        ("p0", items[0].rewritten, "accepted"),
        ("p2", EDITED, "edited"),
    ]
