"""Reading each format into text: HTML's visible text, a PDF's text layer and pages, plain text as is."""

from __future__ import annotations

import io
import logging

import pypdf
import pytest

from rag import Document
from rag.errors import DocumentUnreadable, RagError
from rag.readers import SUFFIXES, extract, html_text, pdf_text, plain_text, read_text

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <meta name="description" content="META DESCRIPTION">
  <title>Harbour   Bridge Reopens</title>
  <style>body { font-family: STYLE_TEXT; }</style>
  <script>var secret = "SCRIPT_TEXT";</script>
  <link rel="stylesheet" href="site.css">
</head>
<body>
  <!-- COMMENT_TEXT -->
  <noscript>NOSCRIPT_TEXT: please enable JavaScript</noscript>
  <template><p>TEMPLATE_TEXT</p></template>
  <article>
    <h1>Harbour Bridge Reopens</h1>
    <div class="lead"><div><p>The bridge reopened on
         <b>Monday</b>&nbsp;after <i>two years</i> of repairs.</p></div>
      <ul><li>Every cable was replaced.</li><li>The deck was <a href="#">repaved</a>.</li></ul>
    </div>
    <p hidden>HIDDEN_TEXT</p><div style="display: none">DISPLAY_NONE_TEXT</div>
    <script type="application/ld+json">{"headline": "JSON_LD_TEXT"}</script>
    <table><tr><th>Year</th><th>Cars a day</th></tr><tr><td>2019</td><td>40,000</td></tr></table>
    Traffic is expected<br>to double.
  </article>
</body>
</html>
"""

# what a reader of PAGE sees, one block a line; its <h1> already is its title, so it is not repeated
PAGE_TEXT = (
    "Harbour Bridge Reopens\n"
    "The bridge reopened on Monday after two years of repairs.\n"
    "Every cable was replaced.\n"
    "The deck was repaved.\n"
    "Year\tCars a day\n"
    "2019\t40,000\n"
    "Traffic is expected\n"
    "to double."
)


def test_html_keeps_the_visible_text_one_block_a_line():
    assert html_text(PAGE.encode("utf-8")) == PAGE_TEXT


@pytest.mark.parametrize(
    "hidden",
    [
        "META DESCRIPTION",
        "STYLE_TEXT",
        "SCRIPT_TEXT",
        "COMMENT_TEXT",
        "NOSCRIPT_TEXT",
        "TEMPLATE_TEXT",
        "HIDDEN_TEXT",
        "DISPLAY_NONE_TEXT",
        "JSON_LD_TEXT",
        "site.css",
    ],
)
def test_html_drops_what_a_reader_never_sees(hidden):
    assert hidden not in html_text(PAGE.encode("utf-8"))


def test_html_nested_blocks_are_separate_lines_and_blank_lines_collapse():
    page = b"<div><div><p>One</p><div>Two<p>Three</p>Four</div></div></div>a<br><br><br><br>b"
    assert html_text(page) == "One\nTwo\nThree\nFour\na\n\nb"


def test_html_pre_keeps_its_line_breaks():
    assert html_text(b"<pre>x = 1\n\ny = 2</pre><p>after</p>") == "x = 1\n\ny = 2\nafter"


@pytest.mark.parametrize(
    ("page", "text"),
    [
        (b"<title>The Title</title><p>The Title</p><p>Body.</p>", "The Title\nBody."),  # not repeated
        (b"<title>The Title</title><p>Body.</p>", "The Title\n\nBody."),
        (b"<p>Menu</p><h1>Heading</h1><p>Body.</p>", "Heading\n\nMenu\nHeading\nBody."),  # no <title>: h1
        (b"<p>Just a paragraph.</p>", "Just a paragraph."),  # neither: nothing added
    ],
)
def test_html_title_becomes_the_first_line(page, text):
    assert html_text(page) == text


def test_html_declared_charset_is_honoured_and_an_undeclared_non_utf8_page_is_refused():
    body = "<p>Café crème in Zürich</p>"
    declared = ('<meta charset="windows-1252">' + body).encode("cp1252")
    assert html_text(declared) == "Café crème in Zürich"
    assert html_text("\ufeff<p>Ünïcode</p>".encode("utf-16")) == "Ünïcode"  # a byte-order mark decides
    with pytest.raises(DocumentUnreadable, match="not UTF-8 and declares no charset"):
        html_text(body.encode("cp1252"))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"<html><head><title>Only a title</title><script>x()</script></head><body> </body></html>",
         "no visible text"),
    ],
)  # fmt: skip
def test_html_with_nothing_to_read_is_unreadable(data, why):
    with pytest.raises(DocumentUnreadable, match=why):
        html_text(data)


def test_deeply_nested_html_does_not_overflow_the_stack():
    depth = 5000  # beyond Python's default recursion limit of 1000
    assert html_text(b"<div>" * depth + b"deep inside" + b"</div>" * depth) == "deep inside"


def test_pdf_pages_are_joined_by_a_blank_line_with_their_start_offsets(make_pdf):
    text, pages = pdf_text(make_pdf(["Alpha page one.", "Bravo page two.", "Charlie page three."]))
    assert text == "Alpha page one.\n\nBravo page two.\n\nCharlie page three."
    assert pages == (0, 17, 34)
    doc = Document("a.pdf", "Alpha page one.", None, text, pages)
    for word, page in [("Alpha", 1), ("Bravo", 2), ("Charlie", 3), ("three", 3)]:
        assert doc.page_at(text.index(word)) == page


def test_pdf_page_without_text_keeps_its_place(make_pdf):
    text, pages = pdf_text(make_pdf(["First.", None, "Third."]))
    doc = Document("a.pdf", "First.", None, text, pages)
    assert len(pages) == 3
    assert doc.page_at(text.index("Third")) == 3


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not a readable PDF"),
        (b"%PDF-1.7\nthis is not really a PDF", "not a readable PDF"),
        (b"<html>a web page saved as .pdf</html>", "not a readable PDF"),
    ],
)
def test_corrupt_pdf_is_unreadable_with_a_reason(data, why):
    with pytest.raises(DocumentUnreadable, match=why):
        pdf_text(data)


def test_truncated_pdf_is_unreadable(make_pdf):
    data = make_pdf(["Some text."])
    with pytest.raises(DocumentUnreadable, match="not a readable PDF"):
        pdf_text(data[: len(data) // 2])


def test_pdf_without_a_text_layer_is_unreadable(make_pdf):
    with pytest.raises(DocumentUnreadable, match="no text layer"):
        pdf_text(make_pdf([None, None]))


def encrypt(data: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_encrypted_with_a_password_is_unreadable(make_pdf):
    with pytest.raises(DocumentUnreadable, match="encrypted with a password"):
        pdf_text(encrypt(make_pdf(["Top secret."]), user_password="s3cret"))


def test_pdf_encrypted_without_a_user_password_is_read(make_pdf):
    # common for PDFs that only forbid printing or copying: anyone may open them, so they are read
    assert pdf_text(encrypt(make_pdf(["Open to all."]), user_password="")).text == "Open to all."


def test_no_library_error_escapes_the_pdf_reader(monkeypatch):
    # pypdf raises plain KeyError, TypeError... on some malformed files: they must become named errors
    def broken(*args, **kwargs):
        raise KeyError("/Root")

    monkeypatch.setattr(pypdf, "PdfReader", broken)
    with pytest.raises(DocumentUnreadable, match="not a readable PDF") as e:
        pdf_text(b"%PDF-1.4")
    assert isinstance(e.value, RagError) and isinstance(e.value.__cause__, KeyError)


def test_plain_text_is_returned_exactly_and_bad_bytes_are_named():
    raw = "\ufeffTitle\r\n\r\nBody.\n"
    assert plain_text(raw.encode("utf-8")) == raw
    with pytest.raises(DocumentUnreadable, match=r"not UTF-8 text \(byte 1\)"):
        plain_text(b"a\xff")
    with pytest.raises(DocumentUnreadable, match="empty"):
        plain_text(b" \n\t")


def test_read_text_dispatches_on_the_suffix_in_any_case(tmp_path, make_pdf):
    (tmp_path / "a.HTM").write_bytes(b"<p>From HTML.</p>")
    (tmp_path / "b.Pdf").write_bytes(make_pdf(["From PDF."]))
    (tmp_path / "c.MD").write_bytes(b"# From Markdown")
    assert read_text(tmp_path / "a.HTM") == ("From HTML.", ())
    assert read_text(tmp_path / "b.Pdf") == ("From PDF.", (0,))
    assert read_text(tmp_path / "c.MD") == ("# From Markdown", ())
    assert set(SUFFIXES) == {".txt", ".md", ".html", ".htm", ".pdf"}


def test_read_text_names_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.docx").write_bytes(b"PK")
    with pytest.raises(DocumentUnreadable, match=r"\.docx is not a supported format"):
        read_text(tmp_path / "notes.docx")
    with pytest.raises(DocumentUnreadable, match="cannot read it"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(DocumentUnreadable, match=r"\.rtf is not a supported format"):
        extract(b"{\\rtf1}", ".rtf")


def test_what_pypdf_logs_about_a_broken_file_goes_into_the_reason(caplog):
    with caplog.at_level(logging.WARNING), pytest.raises(DocumentUnreadable) as e:
        pdf_text(b"%PDF-1.7\nthis is not really a PDF")
    assert "EOF marker not found" in str(e.value)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # not logged without a file name
