"""The chat against hostile input: planted links, numbers read as lists, odd questions, big or many
uploads, visitors' uploads kept apart, and requests from other web pages.

Markdown is rendered here by markdown-it-py (CommonMark, raw HTML on, as the chat allows); the chat's own
renderer (marked, with GFM) also makes links of bare URLs and e-mail addresses, which
:func:`gfm_autolinks` looks for. The browser test renders a planted document in the real chat.
"""

from __future__ import annotations

import html
import json
import re
import time

import httpx
import orjson
import pytest
from test_ui import (  # noqa: F401  (ui_server, upload_server: the apps; the rest: helpers)
    MAYOR,
    ZORBLAT,
    ZORBLAT_QUESTION,
    client,
    final,
    serve,
    ui_server,
    upload_server,
    write,
)

from rag import Answer, Citation, GeneratedAnswer
from ui.app import (
    DELETE_CACHE,
    Library,
    Sessions,
    add_documents,
    check_upload,
    converse,
    create_app,
    llm_note,
    remove_document,
    render_answer,
    render_generated,
    render_sources,
    respond,
)
from ui.library import Quota, UploadRejected

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
    return Answer(False, [cite], "May 5, 1999", PLANTED, question_type="date")


def test_planted_links_in_a_reply_render_as_plain_text():
    answer = planted_answer()
    md = render_answer(answer)
    assert_inert(md)
    shown = visible(to_html(md))
    assert "opened[7](https://evil.example/phish)" in shown
    assert "[7]: https://evil.example/definition" in shown
    assert shown.rstrip().endswith("As said [7]. [1]")
    assert md.rstrip().endswith("As said [7]. [1]"), "marks, the app's and the passage's, stay plain [n]"
    # and every prefix as it streams
    words = PLANTED.split()
    for shown_words in range(words.index("opened[7](https://evil.example/phish)") + 1, len(words) + 1):
        assert_inert(render_answer(answer, shown_words))


def test_planted_links_in_titles_and_file_names_stay_inside_the_cards():
    out = render_sources(planted_answer())
    assert "\n" not in out, "a line break would end the cards' HTML block and hand the rest to Markdown"
    assert not re.search(r"<(a|img)\b", to_html(out))


def test_a_mark_written_in_a_passage_does_not_make_its_card_look_cited():
    answer = planted_answer()
    other = Citation("other.txt", "Other", None, "Unrelated text.", 0, 15, 0.5)
    answer = Answer(False, [answer.citations[0], other], "May 5, 1999", PLANTED.replace("[7]", "[2]"))
    assert "[2]" in answer.text  # quoted from the passage, not written by the app
    cards = render_sources(answer)
    assert cards.count('class="rag-card" open') == 1
    assert cards.index("other.txt") > cards.index('class="rag-more"'), "card 2 is folded, not cited"


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
    ("short", "support", "shown"),
    [
        ("18", "The delegation had 18 members.", "18."),
        ("2019", "It was 2019.", "2019."),
        ("3) three", "4) four", "3) three"),
    ],
)
def test_numbers_at_the_start_of_a_line_show_as_typed(short, support, shown):
    cite = Citation("a.txt", "A", None, support, 0, len(support), 0.5)
    md = render_answer(Answer(False, [cite], short, support, question_type="number"))
    out = to_html(md)
    assert "\\" not in visible(out), out
    assert visible(out).startswith(shown)
    assert "<ol" not in out, "not a numbered list"
    # later lines as well
    later = render_answer(Answer(False, [cite], "Yes", "In short:\n2019. was the year"))
    assert "2019. was the year" in visible(to_html(later)) and "<ol" not in to_html(later)


# --- questions -----------------------------------------------------------------------------------------


def test_a_question_with_a_lone_surrogate_gets_a_reply_the_chat_can_send(seeds_index):
    chats = list(converse("Who is the mayor of Changchun?\ud800", [], index=seeds_index, seconds=0))
    for chat in chats:
        orjson.dumps(chat)  # what Gradio sends: a lone surrogate cannot be encoded
    assert chats[-1][0]["role"] == "user" and chats[-1][1]["role"] == "assistant"
    assert chats[-1][1]["content"].strip()
    reply = final(respond("\udfff", [], index=seeds_index, seconds=0))
    orjson.dumps(reply)
    assert reply[0]["content"].strip()


@pytest.mark.slow
def test_the_chat_endpoint_says_a_question_is_empty(ui_server):  # noqa: F811
    session = client(ui_server)
    for blank in ("", "   "):
        got = session.predict(blank, api_name="/chat")
        assert got is not None, "the endpoint must answer, not return nothing"
        (reply,) = got
        assert reply["content"].startswith("⚠️") and "empty" in reply["content"]
    # the blank questions did not join the conversation
    reply, _ = session.predict(MAYOR, api_name="/chat")
    assert "Wang Zilian" in reply["content"]


# --- uploads -------------------------------------------------------------------------------------------


def test_one_upload_may_hold_only_so_much_text(tmp_path, monkeypatch):
    monkeypatch.setattr("ui.library.MAX_UPLOAD_TEXT_CHARS", 1000)
    files = [write(tmp_path, f"part{i}.txt", f"Part {i}\n\n" + "word " * 150) for i in range(3)]
    assert len(check_upload(files[:1])) == 1
    with pytest.raises(UploadRejected, match="more than 1,000 characters of text") as e:
        check_upload(files)
    assert "smaller groups" in str(e.value)


@pytest.fixture
def base(tmp_path, tiny_source) -> Library:
    lib = Library(source=tiny_source, index_dir=tmp_path / "ui-index")
    lib.load()
    return lib


def cites(lib: Library, question: str, doc: str) -> bool:
    reply, *cards = final(respond(question, [], index=lib.index, seconds=0))
    return any(doc in c["content"] for c in cards)


def test_sessions_keep_their_uploads_apart_and_remove_them(base, tmp_path):
    sessions = Sessions(base)
    doc = write(tmp_path, "zorblat.md", ZORBLAT)
    mine = sessions.own("a")
    assert add_documents([str(doc)], mine).startswith("Added zorblat.md")
    assert sessions.get("a") is mine and sessions.get("b") is base
    assert cites(sessions.get("a"), ZORBLAT_QUESTION, "uploads/zorblat.md")
    assert not cites(sessions.get("b"), ZORBLAT_QUESTION, "zorblat")
    assert not cites(base, ZORBLAT_QUESTION, "zorblat") and base.uploads() == []
    assert mine.index_dir.parent == base.index_dir / "sessions"
    assert mine.uploads() == ["zorblat.md"] and mine.status().startswith("5 documents, 1 of them yours")

    assert remove_document("../ui-index/manifest.json", mine).startswith("⚠️ Not removed")
    assert remove_document("zorblat.md", mine) == "Removed zorblat.md: it is no longer cited."
    assert not cites(sessions.get("a"), ZORBLAT_QUESTION, "zorblat")
    assert not mine.index_dir.exists() and mine.index is base.index


def test_a_session_ends_or_expires_and_takes_its_folder_along(base, tmp_path):
    stale = base.index_dir / "sessions" / "left-by-an-earlier-server"
    stale.mkdir(parents=True)
    sessions = Sessions(base, idle_seconds=60)
    doc = str(write(tmp_path, "zorblat.md", ZORBLAT))
    add_documents([doc], sessions.own("a"))
    assert not stale.exists(), "folders an earlier server left are removed"
    b = sessions.own("b")
    add_documents([doc], b)
    a_dir, b_dir = sessions.get("a").index_dir, b.index_dir
    assert a_dir.is_dir() and b_dir.is_dir()

    sessions.drop("a")  # the page was closed
    assert not a_dir.exists() and sessions.get("a") is base
    assert sessions.expire(time.monotonic() + 30) == [] and b_dir.is_dir()
    assert sessions.expire(time.monotonic() + 61) == ["b"] and not b_dir.exists()
    assert sessions.get("b") is base and len(sessions) == 0
    assert add_documents([doc], b).startswith("⚠️ Upload refused"), "an ended session takes no uploads"


def test_uploads_are_limited_per_session_and_in_sessions(base, tmp_path):
    sessions = Sessions(base, max_sessions=1, quota=Quota(files=2, bytes=10_000))
    docs = [str(write(tmp_path, f"n{i}.md", f"Note {i}\n\nNote {i} is about kites.\n")) for i in range(3)]
    assert add_documents(docs[:2], sessions.own("a")).startswith("Added")
    note = add_documents(docs[2:], sessions.own("a"))
    assert note.startswith("⚠️ Upload refused") and "at most 2 documents" in note
    big = str(write(tmp_path, "big.md", "Big\n\n" + "kite " * 3000))
    remove_document("n1.md", sessions.get("a"))
    note = add_documents([big], sessions.own("a"))
    assert "over the 0.01 MB" in note and sessions.get("a").uploads() == ["n0.md"]

    with pytest.raises(UploadRejected, match="1 visitors already have documents of their own"):
        sessions.own("b")
    sessions.drop("a")
    assert add_documents(docs[:1], sessions.own("b")).startswith("Added")


@pytest.mark.slow
def test_the_upload_endpoint_refuses_a_session_over_the_limit(base, tmp_path):
    from gradio_client import handle_file

    doc = handle_file(str(write(tmp_path, "zorblat.md", ZORBLAT)))
    sessions = Sessions(base, max_sessions=1)
    for url in serve(base, llm=None, sessions=sessions):
        first, second = client(url), client(url)
        assert first.predict([doc], api_name="/upload")[0].startswith("Added zorblat.md")
        note, status, _ = second.predict([doc], api_name="/upload")
        assert note.startswith("⚠️ Upload refused: 1 visitors already have documents of their own")
        assert status == base.status()


# --- requests from other web pages -----------------------------------------------------------------------


def test_other_web_pages_cannot_post_to_the_server(ui_server):  # noqa: F811
    files = {"files": ("planted.txt", b"Planted text.", "text/plain")}
    upload = ui_server.rstrip("/") + "/gradio_api/upload"
    own = ui_server.rstrip("/")
    assert httpx.post(upload, files=files).status_code == 200  # a script: no Origin
    assert httpx.post(upload, files=files, headers={"Origin": own}).status_code == 200  # the page itself
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": own.replace("127.0.0.1", "localhost")},  # another origin, though the same machine
        {"Host": "evil.example:80"},  # DNS rebinding: evil.example resolved to 127.0.0.1
    ):
        r = httpx.post(upload, files=files, headers=headers)
        assert r.status_code == 403, headers
    assert httpx.get(ui_server, headers={"Host": "rebound.example"}).status_code == 403
    assert httpx.get(ui_server).status_code == 200


def test_posted_files_are_swept_from_gradios_cache(tmp_path):
    demo = create_app(Library(source=tmp_path / "docs", index_dir=tmp_path / "index"), llm=None)
    frequency, age = demo.delete_cache
    assert (frequency, age) == DELETE_CACHE and 0 < frequency <= age <= 24 * 3600
    assert json.dumps(demo.config, default=str)  # builds without loading anything
