"""What a person sees: the chat in a real browser, headless Debian Chromium driven by Playwright.

Playwright's own browser download does not work here, so the test needs ``/usr/bin/chromium``
(``apt-get install -y chromium``), and a font with Chinese characters (``apt-get install -y
fonts-noto-cjk``) so that a Chinese question shows as characters, not boxes. The screenshots go to
``tmp_path``; set ``RAG_UI_SCREENSHOT`` (``docs/screenshot.png``) and ``RAG_UI_SCREENSHOT_ZH``
(``docs/screenshot-zh.png``) to also save them there, for the README.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_ui import MAYOR, MAYOR_DOC, ui_server  # noqa: F401  (ui_server: the app over seeds/)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# from a message up to the element that scrolls the chat, and back to its top
SCROLL_CHAT_TO_TOP = """e => {
    for (; e; e = e.parentElement) {
        if (e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== 'visible') {
            e.scrollTop = 0;
            return;
        }
    }
}"""

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install it with apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_typed_question_gets_its_cited_answer_keyboard_only(browser, ui_server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(ui_server)
    expect(page.locator("#rag-status")).to_contain_text("5 documents, ")
    box = page.locator("#rag-question textarea")
    expect(box).to_be_focused()  # the question box has the focus on load: type and press Enter

    page.keyboard.type(MAYOR)
    start = time.perf_counter()
    page.keyboard.press("Enter")
    reply = page.locator("[data-testid='bot']").first
    expect(reply).to_contain_text("Wang Zilian", timeout=10_000)
    first_words = time.perf_counter() - start
    card = page.locator(".rag-card[open]").first
    expect(card).to_contain_text("[1]")
    expect(card).to_contain_text(MAYOR_DOC)
    expect(card.locator("mark")).to_have_text("Wang Zilian")
    expect(reply).to_contain_text("[1]")
    # generous: the 200 ms target is measured by ui.bench, this catches only a gross regression
    assert first_words < 2.0, f"the first words took {first_words:.2f} s"

    # the question at the top of the chat, then the answer and its card: the README's picture
    page.wait_for_timeout(500)  # the chat scrolls itself to the end after the last update: let it finish
    page.locator("[data-testid='user']").first.evaluate(SCROLL_CHAT_TO_TOP)
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=shot)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("RAG_UI_SCREENSHOT"):
        shutil.copyfile(shot, target)

    # a phone: nothing wider than the screen, the card still there
    page.set_viewport_size({"width": 390, "height": 844})
    expect(card).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=tmp_path / "phone.png")

    # the chat clears from the keyboard too, and the examples come back
    page.get_by_label("Clear").focus()
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid='user']")).to_have_count(0)
    expect(page.get_by_label("Select example 1", exact=False)).to_be_visible()
    page.close()


def test_a_chinese_question_shows_in_chinese_and_gets_the_english_source(browser, ui_server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    assert fonts.strip(), "no font with Chinese characters: apt-get install -y fonts-noto-cjk"
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(ui_server)
    expect(page.locator("#rag-status")).to_contain_text("5 documents, ")
    page.locator("#rag-question textarea").fill("吉林省省长是谁？")
    page.keyboard.press("Enter")
    reply = page.locator("[data-testid='bot']").first
    expect(reply).to_contain_text("来源文档是英文的", timeout=10_000)
    expect(reply).to_contain_text("Han Jun")
    expect(reply).to_contain_text("[1]")
    expect(page.locator("[data-testid='user']").first).to_have_text("吉林省省长是谁？")
    expect(page.locator(".rag-card[open] mark").first).to_contain_text("Governor of Jilin Province")
    # the page asks for a CJK font by name before the generic fallback
    family = page.locator("[data-testid='user']").first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "Noto Sans CJK SC" in family
    page.wait_for_timeout(500)
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "screenshot-zh.png"
    page.screenshot(path=shot)
    if target := os.environ.get("RAG_UI_SCREENSHOT_ZH"):
        shutil.copyfile(shot, target)
    page.close()


PLANTED_DOC = (
    "Zorblat Widget Company\n\n"
    "The Zorblat Widget Company opened[7](https://evil.example/phish) in Ulaanbaatar on May 5, 1999, as"
    " https://evil.example/bare, www.evil.example and news@evil.example report <https://evil.example/auto>.\n"
)


def test_an_upload_is_cited_for_its_visitor_only_and_planted_links_stay_text(browser, ui_server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    doc = tmp_path / "zorblat.md"
    doc.write_text(PLANTED_DOC, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(ui_server)
    expect(page.locator("#rag-status")).to_contain_text("5 documents, ")
    page.locator("input[type=file]").set_input_files(str(doc))
    expect(page.locator("#rag-upload-result")).to_contain_text("Added zorblat.md", timeout=30_000)
    expect(page.locator("#rag-status")).to_contain_text("6 documents, 1 of them yours")

    page.locator("#rag-question textarea").fill("When did the Zorblat Widget Company open?")
    page.keyboard.press("Enter")
    reply = page.locator("[data-testid='bot']").first
    expect(reply).to_contain_text("May 5, 1999", timeout=10_000)
    expect(page.locator(".rag-card[open]").first).to_contain_text("uploads/zorblat.md")
    page.wait_for_timeout(500)  # the last streamed update
    # the chat's own Markdown (marked, GFM) shows the planted text, but makes no link or image of it
    expect(reply).to_contain_text("opened[7](https://evil.example/phish)")
    chat = page.locator("#rag-chat")
    assert chat.locator("a[href*='evil'], img[src*='evil']").count() == 0
    assert chat.locator("a").evaluate_all("links => links.map(a => a.href)") == []
    page.locator("[data-testid='user']").first.evaluate(SCROLL_CHAT_TO_TOP)
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "upload.png"
    page.screenshot(path=shot, full_page=True)
    if target := os.environ.get("RAG_UI_UPLOAD_SCREENSHOT"):
        shutil.copyfile(shot, target)

    # another visitor's page: the shared documents only
    other = browser.new_page()
    other.goto(ui_server)
    expect(other.locator("#rag-status")).to_contain_text("5 documents, ")
    other.locator("#rag-question textarea").fill("When did the Zorblat Widget Company open?")
    other.keyboard.press("Enter")
    expect(other.locator("[data-testid='bot']").first).to_be_visible(timeout=10_000)
    other.wait_for_timeout(500)
    expect(other.locator("[data-testid='bot']").first).not_to_contain_text("May 5, 1999")
    other.close()
    page.close()
