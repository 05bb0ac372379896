"""The chat UI: its plain functions, then the launched app through gradio_client.

The app runs in this process (a background thread), so it shares the models the other tests load,
with an index copied from the session's index of seeds/ into a tmp folder.
"""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import pytest

import rag
from rag import Answer, Citation
from ui.app import (
    CONCURRENCY,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    SOURCES_CLASS,
    Library,
    UploadRejected,
    add_documents,
    check_upload,
    conversation,
    converse,
    create_app,
    launch_options,
    render_answer,
    render_sources,
    respond,
    safe_name,
    upload_limit,
)

# gradio's queue trips pandas deprecation warnings that are not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
MAYOR = "Who is the Mayor of Changchun City?"
MAYOR_DOC = "003_77923ca0126b27a7.txt"
ZORBLAT = (
    "Zorblat Widget Company\n\n"
    "The Zorblat Widget Company was founded in Ulaanbaatar on May 5, 1999 by the engineer Ada Quill.\n"
)
ZORBLAT_QUESTION = "When was the Zorblat Widget Company founded?"


def final(messages_stream) -> list[dict]:
    *_, last = messages_stream
    return last


# --- respond ---------------------------------------------------------------------------------------


def test_respond_streams_the_short_answer_first_then_adds_source_cards(seeds_index):
    steps = list(respond(MAYOR, [], index=seeds_index, seconds=0))
    assert len(steps) > 3, "the reply should arrive in pieces"
    assert "Wang Zilian" in steps[0][0]["content"], "the short answer comes first"
    assert all(len(s) == 1 for s in steps[:-1]), "the cards come only with the finished reply"
    texts = [s[0]["content"] for s in steps]
    assert all(len(a) <= len(b) for a, b in zip(texts, texts[1:], strict=False))

    reply, cards = steps[-1]
    assert reply["role"] == cards["role"] == "assistant"
    assert reply["content"].startswith("**Wang Zilian.**")
    assert "[1]" in reply["content"]
    assert SOURCES_CLASS in cards["content"]
    assert "[1]</span>" in cards["content"] and MAYOR_DOC in cards["content"]
    assert "<mark>Wang Zilian</mark>" in cards["content"]


def test_respond_is_a_thin_layer_over_ask(seeds_index):
    answer = rag.ask(MAYOR, index=seeds_index)
    reply, cards = final(respond(MAYOR, None, index=seeds_index, seconds=0))
    assert reply["content"] == render_answer(answer)
    assert cards["content"] == render_sources(answer)


def test_follow_up_uses_the_chat_without_its_source_cards(seeds_index):
    first = final(respond(MAYOR, [], index=seeds_index, seconds=0))
    # as Gradio hands the history back: content blocks, cards included
    history = [{"role": "user", "content": [{"type": "text", "text": MAYOR}]}] + [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in first
    ]
    turns = conversation(history)
    assert [t["role"] for t in turns] == ["user", "assistant"]
    assert turns[0]["content"] == MAYOR and SOURCES_CLASS not in turns[1]["content"]

    follow_up = "And who delivered a speech there?"
    reply, cards = final(respond(follow_up, history, index=seeds_index, seconds=0))
    expected = rag.ask(follow_up, history=turns, index=seeds_index)
    assert not expected.abstained
    assert reply["content"] == render_answer(expected)
    assert MAYOR_DOC in cards["content"]


def test_abstention_offers_related_passages_not_an_answer(seeds_index):
    reply, cards = final(respond("What is the capital of Mars?", [], index=seeds_index, seconds=0))
    assert "don't say" in reply["content"] or "do not say" in reply["content"]
    assert "Related passages" in cards["content"] and "Sources" not in cards["content"]
    assert "<mark>" not in cards["content"] and " open>" not in cards["content"]


def test_converse_shows_the_question_at_once_then_the_growing_reply(seeds_index):
    before = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    chats = list(converse(MAYOR, before, index=seeds_index, seconds=0))
    assert chats[0] == before + [{"role": "user", "content": MAYOR}]
    assert all(c[:3] == chats[0] for c in chats)
    assert chats[-1][3:] == final(respond(MAYOR, before, index=seeds_index, seconds=0))
    assert list(converse("  ", before, index=seeds_index)) == [before], "Enter on an empty box does nothing"


@pytest.mark.parametrize(("question", "says"), [("", "empty"), ("   ", "empty"), ("x" * 2001, "2,000")])
def test_invalid_questions_get_a_message_saying_what_to_do(seeds_index, question, says):
    steps = list(respond(question, [], index=seeds_index, seconds=0))
    assert len(steps) == 1 and len(steps[0]) == 1
    assert steps[0][0]["content"].startswith("⚠️") and says in steps[0][0]["content"]


# --- rendering -------------------------------------------------------------------------------------


def hostile_answer() -> Answer:
    text = "<script>alert(1)</script> Rosie & *Co* opened on\n\nMay 1, 2020 in [Mill] Lane.\n<img src=x>"
    start = text.index("May 1, 2020")
    cite = Citation(
        source="a<b>.txt",
        title="<b>Rosie</b> & co",
        date="2020-05-01",
        text=text,
        start=0,
        end=len(text),
        score=0.9,
        answer_start=start,
        answer_end=start + len("May 1, 2020"),
    )
    other = Citation("b.txt", "Other", None, "Nothing to see.", 0, 15, 0.1)
    support = "Rosie & *Co* opened on May 1, 2020 <img src=x>"
    return Answer(False, [cite, other], "May 1, 2020", support, question_type="date")


def test_source_cards_escape_passage_text_and_highlight_the_answer_span():
    out = render_sources(hostile_answer())
    assert "\n" not in out, "a line break could end Markdown's HTML block and expose the text to Markdown"
    for raw in ("<script>", "<img", "<b>"):
        assert raw not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;b&gt;Rosie&lt;/b&gt; &amp; co" in out and "a&lt;b&gt;.txt" in out
    assert "<mark>May 1, 2020</mark>" in out
    # card 1 is cited, so open; card 2 is folded under "1 more passage"
    assert out.index('<details class="rag-card" open>') < out.index("[1]</span>")
    assert "1 more passage retrieved" in out and "[2]</span>" in out


def test_reply_markdown_shows_document_text_literally_but_keeps_citation_marks():
    answer = hostile_answer()
    md = render_answer(answer)
    assert md.startswith("**May 1, 2020.**\n\n")
    assert "\\<img src=x\\>" in md and "\\*Co\\*" in md  # shown as typed, not as a tag or emphasis
    assert md.count("<") == md.count("\\<")
    assert md.endswith("[1]")
    # as it streams: the short answer alone first, then words of its sentence, the mark last
    assert render_answer(answer, 0) == "**May 1, 2020.**"
    assert render_answer(answer, 2) == "**May 1, 2020.**\n\nRosie \\&"
    assert "[1]" not in render_answer(answer, 99)


# --- uploads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("notes.txt", "notes.txt"),
        ("Notes.TXT", "Notes.txt"),
        ("../../etc/evil.md", "evil.md"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        ("/abs/path/.hidden.md", "hidden.md"),
        ("we?ird*na:me<>.txt", "we_ird_na_me.txt"),
        ("  many   spaces .txt", "many spaces.txt"),
        ("Zürich 2024.md", "Zürich 2024.md"),
        ("...txt", ""),
        ("../.md", ""),
        ("noextension", ""),
    ],
)
def test_safe_name(name, safe):
    assert safe_name(name) == safe


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("slides.pptx", b"PK", "only .txt, .md, .html, .htm and .pdf"),
        ("scan.pdf", b"%PDF-1.4 not really", "not a readable PDF"),
        ("menu.html", b"<script>only()</script>", "no visible text"),
        ("big.txt", b"a" * (MAX_UPLOAD_BYTES + 1), "over the 1 MB limit"),
        ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
        ("blank.md", b" \n\t\n", "empty"),
        ("....md", b"text", "no usable characters"),
    ],
)
def test_check_upload_refuses_bad_files_and_names_them(tmp_path, name, data, says):
    good = write(tmp_path, "good.txt", "fine text")
    bad = write(tmp_path, name, data)
    with pytest.raises(UploadRejected) as e:
        check_upload([str(good), str(bad)])  # all or nothing
    assert says in str(e.value) and name in str(e.value) and "good.txt" not in str(e.value)


def test_a_pdf_or_web_page_may_be_larger_than_a_text_file(tmp_path):
    big = b"a" * (MAX_UPLOAD_BYTES + 1)
    # over the text limit, under the PDF one: refused for what it holds, not for its size
    with pytest.raises(UploadRejected) as e:
        check_upload([str(write(tmp_path, "report.pdf", b"%PDF-1.4 " + big))])
    assert "not a readable PDF" in str(e.value) and "MB" not in str(e.value)
    page = write(tmp_path, "page.html", b"<p>" + b"word " * (MAX_UPLOAD_BYTES // 5) + b"</p>")
    assert [u.name for u in check_upload([str(page)])] == ["page.html"]
    with pytest.raises(UploadRejected, match="over the 10 MB limit"):
        check_upload([str(write(tmp_path, "huge.pdf", b"%PDF-1.4 " + b"a" * upload_limit("huge.pdf")))])


def test_check_upload_limits_the_number_of_files(tmp_path):
    paths = [write(tmp_path, f"n{i}.txt", "x") for i in range(MAX_UPLOAD_FILES + 1)]
    with pytest.raises(UploadRejected, match="at most 20"):
        check_upload(paths)
    assert len(check_upload(paths[:MAX_UPLOAD_FILES])) == MAX_UPLOAD_FILES
    with pytest.raises(UploadRejected, match="no files"):
        check_upload([])


@pytest.fixture
def library(tmp_path, tiny_source) -> Library:
    lib = Library(source=tiny_source, index_dir=tmp_path / "ui-index")
    lib.load()
    return lib


def snapshot(lib: Library) -> tuple:
    files = sorted(p.name for p in lib.uploads_dir.glob("*")) if lib.uploads_dir.exists() else []
    return files, lib.index.num_documents, lib.index.num_passages


def test_upload_is_stored_under_the_index_and_cited_at_once(library, tmp_path):
    before = library.index
    note = add_documents([str(write(tmp_path, "zorblat notes.md", ZORBLAT))], library)
    assert note.startswith("Added zorblat notes.md (1 passage)")
    assert (library.uploads_dir / "zorblat notes.md").read_text(encoding="utf-8") == ZORBLAT
    assert library.index is not before and library.index.num_documents == 5
    assert library.status() == f"5 documents, {library.index.num_passages} passages indexed"

    reply, cards = final(respond(ZORBLAT_QUESTION, [], index=library.index, seconds=0))
    assert "May 5, 1999" in reply["content"]
    assert "uploads/zorblat notes.md" in cards["content"]


def test_the_page_indexes_uploads_with_progress_bars(library, tmp_path, monkeypatch):
    import ui.library

    builds = []
    real = ui.library.open_index

    def recording(**options):
        builds.append(options["progress"])
        return real(**options)

    monkeypatch.setattr(ui.library, "open_index", recording)
    add_documents([str(write(tmp_path, "a.md", "Alpha text."))], library)
    add_documents([str(write(tmp_path, "b.md", "Beta text."))], library, progress=True)
    assert builds == [False, True]


def test_uploaded_pdf_and_html_are_stored_as_they_came_and_cited(library, tmp_path, make_pdf):
    pdf = make_pdf(["Zorblat Annual Report", ZORBLAT.split("\n\n")[1].strip()])
    page = b"<title>Quill Bakery</title><script>noise()</script><p>The Quill Bakery sells rye bread.</p>"
    files = [str(write(tmp_path, "report.pdf", pdf)), str(write(tmp_path, "bakery.html", page))]
    note = add_documents(files, library)
    assert note.startswith("Added report.pdf (1 passage), bakery.html (1 passage)")
    assert (library.uploads_dir / "report.pdf").read_bytes() == pdf
    assert (library.uploads_dir / "bakery.html").read_bytes() == page

    reply, cards = final(respond(ZORBLAT_QUESTION, [], index=library.index, seconds=0))
    assert "May 5, 1999" in reply["content"]
    assert "uploads/report.pdf" in cards["content"]


def test_same_name_never_silently_replaces_another_upload(library, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    add_documents([str(write(tmp_path / "a", "notes.txt", ZORBLAT))], library)
    state = snapshot(library)
    again = add_documents([str(write(tmp_path / "a", "notes.txt", ZORBLAT))], library)
    assert "already added, unchanged" in again and snapshot(library) == state

    other = "Quill Bakery\n\nThe Quill Bakery sells rye bread on Tuesdays.\n"
    note = add_documents([str(write(tmp_path / "b", "notes.txt", other))], library)
    assert "saved as notes-2.txt" in note
    assert (library.uploads_dir / "notes.txt").read_text(encoding="utf-8") == ZORBLAT
    assert (library.uploads_dir / "notes-2.txt").read_text(encoding="utf-8") == other
    assert library.index.num_documents == 6


def test_rejected_upload_leaves_files_and_index_as_they_were(library, tmp_path):
    add_documents([str(write(tmp_path, "keep.txt", ZORBLAT))], library)
    state, index = snapshot(library), library.index
    note = add_documents(
        [str(write(tmp_path, "new.txt", "A new file.")), str(write(tmp_path, "bad.txt", b"\xff\xfe"))],
        library,
    )
    assert note.startswith("⚠️ Upload refused") and "bad.txt" in note
    assert snapshot(library) == state and library.index is index


def test_failed_indexing_removes_the_files_it_wrote(library, tmp_path, monkeypatch):
    state, index = snapshot(library), library.index

    def broken(**kwargs):
        raise rag.IndexNotFound("disk full")

    monkeypatch.setattr("ui.library.open_index", broken)
    note = add_documents([str(write(tmp_path, "new.txt", ZORBLAT))], library)
    assert note.startswith("⚠️ Upload failed") and "disk full" in note
    assert snapshot(library) == state and library.index is index


def test_two_uploads_in_one_second_both_index(library, tmp_path):
    # rag once named index generations by the second, so a second write within it failed
    add_documents([str(write(tmp_path, "one.txt", ZORBLAT))], library)
    note = add_documents(
        [str(write(tmp_path, "two.txt", "Two\n\nThe second file is about kites.\n"))], library
    )
    assert note.startswith("Added two.txt") and library.index.num_documents == 6


# --- the launched app, through gradio_client -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(lib: Library, *, llm="env", **options):
    """Launch the app for ``lib`` (``options`` for create_app) in a background thread; yields its URL,
    closes it after."""
    lib.load()
    lib.warm_up()
    demo = create_app(lib, llm=llm, **options)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(),
    )
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture(scope="session")
def ui_server(seeds_index_dir, tmp_path_factory):
    """The chat over seeds/, shared by the tests that only ask questions (this file and the browser's)."""
    index_dir = tmp_path_factory.mktemp("ui-server") / "index"
    shutil.copytree(seeds_index_dir, index_dir)
    yield from serve(Library(source=SEEDS, index_dir=index_dir))


@pytest.fixture(scope="module")
def upload_server(seeds_index_dir, tmp_path_factory):
    """A second app, for tests that add documents, so the shared one keeps the seed corpus only."""
    index_dir = tmp_path_factory.mktemp("ui-upload-server") / "index"
    shutil.copytree(seeds_index_dir, index_dir)
    lib = Library(source=SEEDS, index_dir=index_dir)
    for url in serve(lib):
        yield url, lib


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def test_app_serves_chat_and_upload_endpoints_without_loading_anything(tmp_path):
    lib = Library(source=tmp_path / "nowhere", index_dir=tmp_path / "index")
    demo = create_app(lib)
    assert not lib.loaded and not (tmp_path / "index").exists()
    fns = {f.api_name: f for f in demo.fns.values() if f.api_name}
    assert fns["chat"].concurrency_limit >= 8
    assert fns["upload"].concurrency_limit == 1


def test_upload_names_are_checked_again_when_stored(library):
    from ui.app import Upload

    with pytest.raises(ValueError, match="not a safe file name"):
        library.add([Upload("../escape.txt", b"text")])
    assert not (library.index_dir / "escape.txt").exists()


def test_api_answers_the_example_question_with_its_citation(ui_server):
    reply, cards = client(ui_server).predict(MAYOR, api_name="/chat")
    assert "Wang Zilian" in reply["content"] and "[1]" in reply["content"]
    assert MAYOR_DOC in cards["content"] and "<mark>Wang Zilian</mark>" in cards["content"]


@pytest.mark.slow
def test_api_keeps_the_conversation_per_session(ui_server, seeds_index):
    session = client(ui_server)
    session.predict(MAYOR, api_name="/chat")
    reply, cards = session.predict("And who delivered a speech there?", api_name="/chat")
    shown = render_answer(rag.ask(MAYOR, index=seeds_index))
    history = [{"role": "user", "content": MAYOR}, {"role": "assistant", "content": shown}]
    expected = rag.ask("And who delivered a speech there?", history=history, index=seeds_index)
    assert reply["content"] == render_answer(expected) and MAYOR_DOC in cards["content"]


@pytest.mark.slow
def test_eight_simultaneous_questions_are_all_answered_correctly(ui_server, seeds_index):
    questions = [
        MAYOR,
        "Which province is Changchun in?",
        "Which district leaders took part in the Jiaojiang delegation's inspection?",
        "Who delivered speeches at the opening ceremony of the 2023 conference?",
        "What kinds of cars make up FAW's product pattern?",
        "Who attended the meeting at which FAW released its development outline?",
        "When was the report on the research institute updated?",
        "What is the capital of Mars?",
    ]
    assert len(questions) == CONCURRENCY
    expected = [render_answer(rag.ask(q, index=seeds_index)) for q in questions]
    clients = [client(ui_server) for _ in questions]
    barrier = threading.Barrier(len(questions))
    got: dict[int, str] = {}

    def one(i: int) -> None:
        barrier.wait()
        got[i] = clients[i].predict(questions[i], api_name="/chat")[0]["content"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [got.get(i) for i in range(len(questions))] == expected
    assert "Wang Zilian" in got[0]


@pytest.mark.slow
def test_api_uploads_are_private_to_their_session_and_can_be_removed(upload_server, tmp_path):
    from gradio_client import handle_file

    url, lib = upload_server
    base = snapshot(lib)
    mine, theirs = client(url), client(url)
    path = write(tmp_path, "zorblat.txt", ZORBLAT)
    note, status, _ = mine.predict([handle_file(str(path))], api_name="/upload")
    assert note.startswith("Added zorblat.txt") and status.startswith("6 documents, 1 of them yours")
    reply, cards = mine.predict(ZORBLAT_QUESTION, api_name="/chat")
    assert "May 5, 1999" in reply["content"] and "uploads/zorblat.txt" in cards["content"]
    # another visitor, and the shared library, know nothing of it
    reply, cards = theirs.predict(ZORBLAT_QUESTION, api_name="/chat")
    assert "May 5, 1999" not in reply["content"] and "zorblat" not in cards["content"]
    assert snapshot(lib) == base and not (lib.index_dir / "uploads").exists()
    stored = list((lib.index_dir / "sessions").glob("*/uploads/zorblat.txt"))
    assert len(stored) == 1 and stored[0].read_text(encoding="utf-8") == ZORBLAT
    # nor can they remove it
    note, _, _ = theirs.predict("zorblat.txt", api_name="/remove")
    assert note.startswith("⚠️ Not removed") and stored[0].is_file()

    note, status, _ = mine.predict("zorblat.txt", api_name="/remove")
    assert note == "Removed zorblat.txt: it is no longer cited." and status.startswith("5 documents, ")
    reply, cards = mine.predict(ZORBLAT_QUESTION, api_name="/chat")
    assert "May 5, 1999" not in reply["content"] and "zorblat" not in cards["content"]
    assert not stored[0].parent.parent.exists(), "the session's index folder is deleted with its last upload"


@pytest.mark.slow
def test_api_upload_refusals_leave_the_index_alone(upload_server, tmp_path):
    from gradio_client import handle_file

    url, lib = upload_server
    state = snapshot(lib)
    bad = write(tmp_path, "cp1252.txt", "naïve café".encode("cp1252"))
    note, status, _ = client(url).predict([handle_file(str(bad))], api_name="/upload")
    assert note.startswith("⚠️ Upload refused") and "not UTF-8" in note
    broken = write(tmp_path, "broken.pdf", b"%PDF-1.4")
    note, _, _ = client(url).predict([handle_file(str(broken))], api_name="/upload")
    assert note.startswith("⚠️ Upload refused") and "broken.pdf: not a readable PDF" in note
    # Gradio itself refuses types the button does not accept, before our code runs
    slides = write(tmp_path, "slides.pptx", b"PK")
    with pytest.raises(Exception, match="Invalid file type"):
        client(url).predict([handle_file(str(slides))], api_name="/upload")
    assert snapshot(lib) == state
    assert status == lib.status()
