"""Stage 1: reading a folder of documents, titles, dates and which lines are content."""

from __future__ import annotations

import logging
import os
import pathlib

import pytest

import rag
from rag import Citation, Document
from rag.config import PROJECT_ROOT
from rag.documents import (
    SourceFile,
    content_runs,
    is_furniture,
    load_documents,
    make_document,
    read_document,
    scan_documents,
)

SEEDS = PROJECT_ROOT / "seeds"

# The page furniture of the seed articles, in the forms they take there.
FURNITURE = [
    "【Fonts: A+ A A- Print",
    "Please indicate the source when reprinting.",
    "Editor: Chen Qi",
    "Recommended reading",
    "Updated : 2021-04-06Source : CCFAO",
    "(Editors in charge: Wang Diyuan, Xie Long)",
    "Read the original text",
]

ARTICLE = (
    "Harbour Bridge Reopens\n"
    "\n"
    "Updated : 2021-04-06Source : CCFAO\n"
    "【Fonts: A+ A A- Print\n"
    "\n"
    "The harbour bridge reopened on Monday after two years of repairs.\n"
    "Engineers replaced every cable.\n"
    "Recommended reading\n"
    "Editor: Li Wei\n"
    "Traffic is expected to double by the summer.\n"
    "Please indicate the source when reprinting.\n"
)


def write(path: pathlib.Path, data: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Harbour Bridge Reopens\n\nBody text.", "Harbour Bridge Reopens"),
        ("\n  \n   Harbour Bridge Reopens  \nBody text.", "Harbour Bridge Reopens"),
        ("# Harbour Bridge Reopens\n\nBody text.", "Harbour Bridge Reopens"),  # Markdown heading
        (" date 2023-07-24 Harbour Bridge Reopens\n\nBody.", "Harbour Bridge Reopens"),  # date is not title
        ("\ufeffHarbour Bridge Reopens\nBody.", "Harbour Bridge Reopens"),  # byte-order mark
    ],
)
def test_title_is_the_first_non_empty_line(text, title):
    assert make_document("a.txt", text).title == title


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Title\n\nUpdated : 2021-04-06Source : CCFAO\nBody.", "2021-04-06"),
        (" date 2023-07-24 Title of the day\n\nBody.", "2023-07-24"),
        ("Title\nPublished: 2020/3/9\nBody.", "2020-03-09"),  # zero-padded
        ("Title\n\nNo date in this one.", None),
        ("Title\n" + "x" * 500 + "\nUpdated : 2021-04-06", None),  # too deep into the text to be its date
    ],
)
def test_date_comes_from_the_opening_lines(text, date):
    assert make_document("a.txt", text).date == date


@pytest.mark.parametrize("line", FURNITURE)
def test_furniture_lines_are_recognised(line):
    assert is_furniture(line)


@pytest.mark.parametrize(
    "line",
    [
        "The harbour bridge reopened on Monday.",
        "The editor of the paper resigned: nobody knows why.",  # "editor" is not a credit line here
        "Readers were asked to indicate their source of news.",
    ],
)
def test_content_lines_are_not_furniture(line):
    assert not is_furniture(line)


def test_content_runs_keep_content_and_drop_furniture():
    runs = content_runs(ARTICLE)
    texts = [ARTICLE[s:e] for s, e in runs]
    # furniture splits the text: the title, the two paragraphs before "Recommended reading", the last line
    assert texts == [
        "Harbour Bridge Reopens",
        "The harbour bridge reopened on Monday after two years of repairs.\nEngineers replaced every cable.",
        "Traffic is expected to double by the summer.",
    ]
    joined = "\n".join(texts)
    for line in (
        "Fonts:",
        "indicate the source when reprinting",
        "Editor:",
        "Recommended reading",
        "Updated",
    ):
        assert line not in joined


def test_content_runs_of_a_leading_date_line_start_after_the_date():
    text = " date 2023-07-24 Harbour Bridge Reopens\n\nThe bridge reopened.\n"
    ((start, end),) = content_runs(text)
    assert text[start:end] == "Harbour Bridge Reopens\n\nThe bridge reopened."


def test_offsets_refer_to_the_file_as_stored(tmp_path):
    # CRLF line ends and a byte-order mark: neither may shift the offsets of what a reader sees
    raw = "\ufeff" + ARTICLE.replace("\n", "\r\n")
    write(tmp_path / "a.txt", raw)
    (doc,) = load_documents(tmp_path)
    assert len(doc.text) == len(raw)
    assert doc.text[1:] == raw[1:]
    assert doc.title == "Harbour Bridge Reopens"
    runs = content_runs(doc.text)
    assert [doc.text[s:e] for s, e in runs] == [raw[s:e] for s, e in runs]
    assert raw[runs[1][0] : runs[1][1]] == (
        "The harbour bridge reopened on Monday after two years of repairs.\r\nEngineers replaced every cable."
    )


def test_seed_documents_load_with_titles_dates_and_clean_runs():
    docs = {d.id: d for d in load_documents(SEEDS)}
    assert sorted(docs) == sorted(p.name for p in SEEDS.glob("*.txt"))
    first = docs["000_6fce77a59fee8010.txt"]
    assert first.title == "Northeast Asian Automotive Research Institute Founded"
    assert first.date == "2021-04-06"
    second = docs["001_b7002ee26ad1e5c6.txt"]
    assert second.date == "2023-07-24"
    assert second.title.startswith("2023 China Automobile Innovation Conference")
    for doc in docs.values():
        assert doc.text == (SEEDS / doc.id).read_bytes().decode("utf-8")
        for s, e in content_runs(doc.text):
            assert not any(is_furniture(line) for line in doc.text[s:e].splitlines())
            assert "indicate the source when reprinting" not in doc.text[s:e]
            assert "Fonts:" not in doc.text[s:e]


def test_load_documents_skips_bad_files_with_a_warning_and_loads_the_rest(tmp_path, monkeypatch, caplog):
    write(tmp_path / "good.txt", "Good\n\nA readable document.")
    write(tmp_path / "empty.txt", " \n\t\n")
    write(tmp_path / "binary.txt", b"\xff\xfe bad")
    locked = write(tmp_path / "locked.txt", "Locked\n\nNobody may read this.")
    # chmod cannot lock root out, and CI may run as root: make the read itself fail
    real_read_bytes = pathlib.Path.read_bytes

    def read_bytes(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    with caplog.at_level(logging.WARNING, logger="rag"):
        docs = load_documents(tmp_path)
    assert [d.id for d in docs] == ["good.txt"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    for name, why in [("empty.txt", "empty"), ("binary.txt", "UTF-8"), ("locked.txt", "Permission denied")]:
        assert any(name in w and why in w for w in warnings), (name, warnings)


def test_load_documents_recurses_with_ids_relative_to_the_folder(tmp_path):
    write(tmp_path / "b.txt", "B\n\nTop level.")
    write(tmp_path / "sub" / "a.md", "# A\n\nIn a sub-folder.")
    write(tmp_path / "sub" / "deeper" / "c.TXT", "C\n\nTwo levels down.")
    write(tmp_path / "sub" / "notes.json", '{"not": "a document"}')
    docs = load_documents(tmp_path)
    assert [d.id for d in docs] == ["b.txt", "sub/a.md", "sub/deeper/c.TXT"]
    assert [d.title for d in docs] == ["B", "A", "C"]


def test_missing_folder_raises_source_not_found(tmp_path):
    with pytest.raises(rag.SourceNotFound, match="nowhere"):
        load_documents(tmp_path / "nowhere")


# --- pages ----------------------------------------------------------------------------------------


def test_page_at_maps_offsets_to_pages_by_hand():
    text = "one\n\ntwo\n\nthree"  # pages start at 0, 5 and 10
    doc = Document("a.pdf", "one", None, text, pages=(0, 5, 10))
    assert [doc.page_at(i) for i in range(len(text) + 1)] == [1] * 5 + [2] * 5 + [3] * 6
    # the blank line between pages belongs to the page before it
    assert doc.page_at(text.index("two") - 1) == 1
    unpaged = Document("a.txt", "one", None, text)
    assert unpaged.pages == () and unpaged.page_at(3) is None
    for bad in (-1, len(text) + 1):
        with pytest.raises(ValueError, match="outside a.pdf"):
            doc.page_at(bad)


@pytest.mark.parametrize("pages", [(1, 5), (0, 5, 3), (0, 99)])
def test_page_starts_must_rise_from_zero_within_the_text(pages):
    with pytest.raises(ValueError, match="page starts"):
        Document("a.pdf", "t", None, "one\n\ntwo", pages=pages)


def test_citation_page_is_optional_and_last():
    c = Citation("a.txt", "A", None, "text", 0, 4, 0.5, 1, 3)  # positional, as before pages existed
    assert c.page is None and c.answer == "ex"
    assert Citation("a.pdf", "A", None, "text", 0, 4, 0.5, page=2).page == 2


# --- scanning and reading every format ------------------------------------------------------------


def test_scan_documents_lists_supported_files_with_size_and_mtime_without_reading(tmp_path, monkeypatch):
    write(tmp_path / "b.txt", "B text")
    write(tmp_path / "a" / "page.HTML", "<p>html</p>")
    write(tmp_path / "a" / "deep" / "report.pdf", b"%PDF-not read by a scan")
    write(tmp_path / "a" / "old.htm", "<p>htm</p>")
    write(tmp_path / "notes.json", "{}")
    write(tmp_path / "picture.png", b"\x89PNG")
    write(tmp_path / ".hidden.md", "hidden file")
    write(tmp_path / ".git" / "HEAD.txt", "inside a hidden folder")
    write(tmp_path / "a" / ".cache" / "c.md", "inside a nested hidden folder")
    (tmp_path / "folder.md").mkdir()  # a folder named like a document is not one

    def no_reading(self, *args, **kwargs):
        raise AssertionError(f"scan_documents read {self}")

    monkeypatch.setattr(pathlib.Path, "read_bytes", no_reading)
    monkeypatch.setattr(pathlib.Path, "read_text", no_reading)
    monkeypatch.setattr(pathlib.Path, "open", no_reading)
    files = scan_documents(tmp_path)
    assert [f.id for f in files] == ["a/deep/report.pdf", "a/old.htm", "a/page.HTML", "b.txt"]
    for f in files:
        st = (tmp_path / f.id).stat()
        assert f == SourceFile(f.id, tmp_path / f.id, st.st_size, st.st_mtime_ns)
    assert files[-1].size == len("B text")


def test_scan_documents_warns_of_a_folder_it_cannot_list_and_scans_the_rest(tmp_path, monkeypatch, caplog):
    write(tmp_path / "a.txt", "A")
    write(tmp_path / "locked" / "b.txt", "B")
    real_scandir = os.scandir

    def scandir(path="."):
        # chmod cannot lock root out, and CI may run as root: make the listing itself fail
        if pathlib.Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="rag"):
        assert [f.id for f in scan_documents(tmp_path)] == ["a.txt"]
    assert [r.getMessage() for r in caplog.records] == ["skipped locked: cannot list it (Permission denied)"]


def test_scan_documents_raises_source_not_found_for_a_missing_folder(tmp_path):
    with pytest.raises(rag.SourceNotFound, match="nowhere"):
        scan_documents(tmp_path / "nowhere")


def test_read_document_reads_one_scanned_file(tmp_path, make_pdf, caplog):
    write(tmp_path / "r" / "report.pdf", make_pdf(["Report title", "Findings on page two."]))
    write(tmp_path / "bad.pdf", b"%PDF-1.4 broken")
    good, bad = sorted(scan_documents(tmp_path), key=lambda f: f.id != "r/report.pdf")
    doc = read_document(good)
    assert (doc.id, doc.title) == ("r/report.pdf", "Report title")
    assert doc.page_at(doc.text.index("Findings")) == 2
    with caplog.at_level(logging.WARNING, logger="rag"):
        assert read_document(bad) is None
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "rag"]
    assert warning.startswith("skipped bad.pdf: not a readable PDF (")  # then pypdf's words for what broke


def test_load_documents_reads_every_format_in_sub_folders(tmp_path, make_pdf):
    write(tmp_path / "notes.txt", "Notes\n\nPlain text.")
    write(tmp_path / "web" / "page.html", "<title>Web Page</title><script>x()</script><p>From the web.</p>")
    write(tmp_path / "web" / "old.htm", "<h1>Old Page</h1><p>Older HTML.</p>")
    write(tmp_path / "papers" / "2024" / "study.PDF", make_pdf(["A Study", "Results: 42 apples.", "Thanks."]))
    docs = {d.id: d for d in load_documents(tmp_path)}
    assert list(docs) == ["notes.txt", "papers/2024/study.PDF", "web/old.htm", "web/page.html"]
    assert {i: d.title for i, d in docs.items()} == {
        "notes.txt": "Notes",
        "papers/2024/study.PDF": "A Study",
        "web/old.htm": "Old Page",
        "web/page.html": "Web Page",
    }
    assert docs["web/page.html"].text == "Web Page\n\nFrom the web."
    study = docs["papers/2024/study.PDF"]
    assert study.page_at(study.text.index("42 apples")) == 2
    assert [d.pages for i, d in docs.items() if i != "papers/2024/study.PDF"] == [(), (), ()]


def test_unreadable_files_of_every_format_are_skipped_with_a_warning_naming_them(tmp_path, make_pdf, caplog):
    write(tmp_path / "good.pdf", make_pdf(["Good PDF", "Second page."]))
    write(tmp_path / "good.html", "<p>Good HTML.</p>")
    write(tmp_path / "scans" / "scanned.pdf", make_pdf([None, None]))
    write(tmp_path / "corrupt.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    write(tmp_path / "empty.pdf", b"")
    write(tmp_path / "latin1.html", "<p>Café</p>".encode("latin-1"))
    write(tmp_path / "blank.htm", "<html><head><title>x</title></head><body>  </body></html>")
    with caplog.at_level(logging.WARNING, logger="rag"):
        docs = load_documents(tmp_path)
    assert [d.id for d in docs] == ["good.html", "good.pdf"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "rag" and r.levelno == logging.WARNING]
    expected = [
        ("blank.htm", "no visible text"),
        ("corrupt.pdf", "not a readable PDF"),
        ("empty.pdf", "not a readable PDF"),
        ("latin1.html", "not UTF-8"),
        ("scans/scanned.pdf", "no text layer"),
    ]
    assert len(warnings) == len(expected), warnings
    for (name, why), warning in zip(expected, warnings, strict=True):
        assert warning.startswith(f"skipped {name}: ") and why in warning, (name, warning)
