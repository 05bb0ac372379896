"""The chat against hostile text: planted links and numbers read as lists.

Markdown is rendered here by markdown-it-py (CommonMark, raw HTML on, as the chat allows); the chat's own
renderer (marked, with GFM) also makes links of bare URLs and e-mail addresses, which
:func:`gfm_autolinks` looks for. The browser test renders a planted document in the real chat.
"""

from __future__ import annotations

import html
import re

import pytest
from test_ui import ZORBLAT_QUESTION

from rag import Answer, Citation, GeneratedAnswer
from ui.app import llm_note, render_answer, render_generated, render_sources

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

EVIL = "evil.example"
PLANTED = (
    "The Zorblat Widget Company opened[7](https://evil.example/phish) on May 5, 1999 [7].\n"
    "See [the report][7], <https://evil.example/auto>, https://evil.example/bare, www.evil.example and"
    " phish@evil.example. ![7](https://evil.example/pixel.png) <a href='https://evil.example/a'>x</a>"
    "\n\n[7]: https://evil.example/definition\n\nAs said [7]."
)


def to_html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def visible(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def gfm_autolinks(markdown: str) -> list[str]:
    """What GFM (marked's ``url`` rule) would make links of: a scheme's ``://``, ``www.``, ``x@y``, as
    typed. A backslash before the ``:``, ``.`` or ``@`` keeps it text."""
    return re.findall(r"(?i)(?:https?|ftp)://|www\.|[\w.+-]@[\w-]", markdown)


def assert_inert(markdown: str) -> None:
    out = to_html(markdown)
    assert not re.search(r"<(a|img|script)\b", out), out
    assert not gfm_autolinks(markdown), markdown
    assert EVIL in visible(out), "the text is shown, as text"


def planted_answer() -> Answer:
    start = PLANTED.index("May 5, 1999")
    cite = Citation(
        source="[7](https:\n\nevil.example)\n\n[7](https://evil.example/src).txt",
        title="Zorblat\n\n[7](https://evil.example/title) <https://evil.example/t>",
        date=None,
        text=PLANTED,
        start=0,
        end=len(PLANTED),
        score=0.9,
        answer_start=start,
        answer_end=start + len("May 5, 1999"),
    )
    return Answer("May 5, 1999.\n\n" + PLANTED, False, [cite], "May 5, 1999", "date")


def test_planted_links_in_a_reply_render_as_plain_text():
    answer = planted_answer()
    md = render_answer(answer)
    assert_inert(md)
    shown = visible(to_html(md))
    assert "opened[7](https://evil.example/phish)" in shown
    assert "[7]: https://evil.example/definition" in shown
    assert shown.rstrip().endswith("As said [7].")
    assert md.rstrip().endswith("As said [7]."), "the app's own marks stay plain [n]"
    # a streamed prefix too
    assert_inert(render_answer(answer, answer.text[: answer.text.index("(https") + 30]))


def test_planted_links_in_titles_and_file_names_stay_inside_the_cards():
    out = render_sources(planted_answer())
    assert "\n" not in out, "a line break would end the cards' HTML block and hand the rest to Markdown"
    assert not re.search(r"<(a|img)\b", to_html(out))


def test_model_written_text_and_notices_cannot_make_links():
    extracted = planted_answer()
    result = GeneratedAnswer(
        text="It opened [1](https://evil.example/m) on May 5, 1999 [1]. Details: www.evil.example",
        extracted=extracted,
        question=ZORBLAT_QUESTION,
        generated=True,
        grounded=True,
        cited=(1,),
        notices=("The server said: see <https://evil.example/n> or [1]: https://evil.example/d",),
    )
    md = render_generated(result)
    assert_inert(md)
    assert "[1]" in visible(to_html(md))
    assert_inert(llm_note("http://127.0.0.1:8080/v1", "[m](https://evil.example/model)"))


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("18.\n\nThe delegation had 18 members [1].", "18."),
        ("2019.\n\nIt was 2019. [1]", "2019."),
        ("3) three\n\n4) four [1]", "3) three"),
    ],
)
def test_numbers_at_the_start_of_a_line_show_as_typed(text, shown):
    cite = Citation("a.txt", "A", None, text, 0, len(text), 0.5)
    md = render_answer(Answer(text, False, [cite], text.split("\n")[0].rstrip("."), "number"))
    out = to_html(md)
    assert "\\" not in visible(out), out
    assert visible(out).startswith(shown)
    assert "<ol" not in out, "not a numbered list"
    # later lines as well
    later = render_answer(Answer("Yes.\n\nIn short:\n2019. was the year", False, [cite], None, None))
    assert "2019. was the year" in visible(to_html(later)) and "<ol" not in to_html(later)
