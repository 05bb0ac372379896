"""Stage 1: reading a folder of documents, titles, dates and which lines are content."""

from __future__ import annotations

import logging
import pathlib

import pytest

import rag
from rag.config import PROJECT_ROOT
from rag.documents import content_runs, is_furniture, load_documents, make_document

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
