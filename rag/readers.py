"""Turn one file's bytes into text: one reader per format, and :func:`read_text` to pick by suffix.

Plain text (``.txt``, ``.md``) is returned exactly as decoded, so offsets match the file. HTML and
PDF return the text a reader sees (HTML's visible text, a PDF's text layer), so their offsets refer
to that extracted text, and a PDF's page starts are returned with it. Every failure, whatever the
library underneath raised, becomes :class:`DocumentUnreadable` with a reason a person can act on.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import re
from pathlib import Path
from typing import NamedTuple

from .errors import DocumentUnreadable

PLAIN_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
SUFFIXES = PLAIN_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES

# Text taken from one file at most: 5 million characters is about ten books, 1.2 million tokens or 8,000
# passages (a few minutes of embedding here). A crafted PDF can expand a few hundred KB into tens of
# millions of characters; a larger file is refused with this figure in its reason, never cut silently.
MAX_TEXT_CHARS = 5_000_000

_REASON_CHARS = 200  # a library's message is quoted in the warning, but never a whole dump of it


class Extracted(NamedTuple):
    """A file's text and, for paged formats, the offset in ``text`` where each page starts."""

    text: str
    pages: tuple[int, ...] = ()


def read_text(path: Path, *, max_chars: int = MAX_TEXT_CHARS) -> Extracted:
    """The text of the file at ``path``, read by the reader for its suffix (case-insensitive); refused
    when it holds more than ``max_chars`` characters of text."""
    path = Path(path)
    suffix = _supported(path.suffix)  # before reading: no point reading what cannot be parsed
    try:
        if suffix in PLAIN_SUFFIXES and path.stat().st_size > 4 * max_chars:
            raise too_long(max_chars)  # UTF-8 takes at most 4 bytes a character: no need to read it
        data = path.read_bytes()
    except OSError as e:
        raise DocumentUnreadable(f"cannot read it ({e.strerror or e})") from e
    return extract(data, suffix, max_chars=max_chars)


def extract(data: bytes, suffix: str, *, max_chars: int = MAX_TEXT_CHARS) -> Extracted:
    """The text of a file's ``data``, given the file's suffix (for bytes already in memory).

    Raises :class:`DocumentUnreadable` for text longer than ``max_chars``; a PDF's extraction stops as
    soon as it passes the limit, so a file crafted to expand costs no more than the limit's worth.
    """
    suffix = _supported(suffix)
    if suffix in PLAIN_SUFFIXES:
        found = Extracted(plain_text(data))
    elif suffix in HTML_SUFFIXES:
        found = Extracted(html_text(data))
    else:
        found = pdf_text(data, max_chars=max_chars)
    if len(found.text) > max_chars:
        raise too_long(max_chars)
    return found


def too_long(max_chars: int) -> DocumentUnreadable:
    return DocumentUnreadable(
        f"it holds more than {max_chars:,} characters of text, the limit; split it into smaller files"
    )


def _supported(suffix: str) -> str:
    suffix = suffix.lower()
    if suffix not in SUFFIXES:
        kind = suffix or "a file without a suffix"
        raise DocumentUnreadable(f"{kind} is not a supported format (read: {', '.join(SUFFIXES)})")
    return suffix


def _quote(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


# --- plain text --------------------------------------------------------------------------------


def plain_text(data: bytes) -> str:
    """UTF-8 text exactly as stored (a byte-order mark included, so offsets match the file)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DocumentUnreadable(f"not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    if not text.strip():
        raise DocumentUnreadable("the file is empty")
    return text


# --- HTML --------------------------------------------------------------------------------------

# Why Beautiful Soup on lxml: bs4 is the most used and long-maintained HTML library for Python, and its
# tree of tags and strings makes the block-aware walk below short and plain; lxml gives it a fast C
# parser (libxml2) that recovers from the broken markup real pages are full of. selectolax is faster
# still, but nothing here is bound by parsing speed, and its smaller API would make the walk longer.

# Never visible: code, styles, fallbacks for disabled scripts, inert templates, the head (its title is
# taken separately), and embedded objects whose text is not the page's.
_INVISIBLE = frozenset(
    {"script", "style", "noscript", "template", "head", "iframe", "object", "embed", "svg", "math", "canvas"}
)
# Elements a browser lays out as blocks: each starts and ends a line, so paragraphs stay apart.
_BLOCKS = frozenset(
    """address article aside blockquote body caption center dd details dialog dir div dl dt fieldset
    figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main menu nav ol
    option p pre section summary table tbody tfoot thead tr ul""".split()
)
_CELLS = frozenset({"td", "th"})  # a tab between cells keeps a table row on one line
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[^\S\n\t]+")  # runs of spaces, but not the tabs between table cells
_WHITESPACE = re.compile(r"\s+")  # outside <pre>, a source line break shows as a space
# markers pushed on the walk's stack when entering an element, met again on leaving it
_LEAVE_BLOCK, _LEAVE_PRE, _LEAVE_CELL = object(), object(), object()


def html_text(data: bytes) -> str:
    """The visible text of an HTML page, one line per block, under its title.

    The title (``<title>``, else the first ``<h1>``) becomes the first line, followed by a blank line,
    unless the page already starts with it, so the document's title is the page's.
    """
    from bs4 import BeautifulSoup  # imported here: only a build reading HTML pays for it

    markup = _decode_html(data)
    try:
        soup = BeautifulSoup(markup, "lxml")
        lines = _visible_lines(soup)
        title_tag = soup.find("title") or soup.find("h1")
        title = _squeeze(title_tag.get_text(" ")) if title_tag is not None else ""
    except Exception as e:
        # the parser recovers from nearly anything; what it cannot take must not stop a build
        raise DocumentUnreadable(f"cannot parse the HTML ({_quote(e)})") from e
    if not lines:
        raise DocumentUnreadable("the page has no visible text")
    if title and lines[0] != title:
        lines[:0] = [title, ""]
    return "\n".join(lines)


def _decode_html(data: bytes) -> str:
    """Decode by byte-order mark, else by the page's declared charset, else as UTF-8.

    A page that declares nothing and is not UTF-8 is refused rather than guessed at: a wrong guess
    would index mojibake that no question matches, and nobody would be told.
    """
    from bs4.dammit import EncodingDetector

    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                       (codecs.BOM_UTF16_BE, "utf-16-be")):  # fmt: skip
        if data.startswith(bom):
            data, encoding, declared = data[len(bom) :], codec, True
            break
    else:
        found = EncodingDetector.find_declared_encoding(data, is_html=True)
        encoding, declared = (found, True) if found and _known_codec(found) else ("utf-8", False)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        how = f"not valid {encoding} as it declares" if declared else "not UTF-8 and declares no charset"
        raise DocumentUnreadable(f"{how} (byte {e.start}); save it as UTF-8") from e
    if not text.strip():
        raise DocumentUnreadable("the file is empty")
    return text


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _visible_lines(soup) -> list[str]:
    """Walk the tree in document order, gathering visible strings into lines.

    A block's start and end end the current line, unless it is empty, so the whitespace between blocks
    in the source makes no blank lines; ``<br>`` always ends one, so ``<br><br>`` leaves a blank line.
    Inside ``<pre>`` each line break is a ``<br>``; spaces are squeezed everywhere, indentation included.
    The walk is iterative: real pages nest deeply enough to reach Python's recursion limit.
    """
    from bs4 import NavigableString, Tag

    lines: list[str] = []
    current: list[str] = []

    def end_line(*, keep_empty: bool) -> None:
        line = _SPACES.sub(" ", "".join(current)).strip()
        if line or keep_empty:
            lines.append(line)
        current.clear()

    stack: list = [soup]
    in_pre = 0
    while stack:
        node = stack.pop()
        if node is _LEAVE_PRE:
            in_pre -= 1
            end_line(keep_empty=False)
        elif node is _LEAVE_BLOCK:
            end_line(keep_empty=False)
        elif node is _LEAVE_CELL:
            current.append("\t")
        elif isinstance(node, NavigableString):
            # exactly NavigableString: its subclasses are comments, doctypes, CDATA, script/style text
            if type(node) is not NavigableString:
                continue
            if not in_pre:
                current.append(_WHITESPACE.sub(" ", node))
                continue
            first, *rest = node.replace("\r\n", "\n").split("\n")
            current.append(first)
            for line in rest:
                end_line(keep_empty=True)
                current.append(line)
        elif isinstance(node, Tag):
            name = node.name
            if name in _INVISIBLE or node.has_attr("hidden") or _HIDDEN_STYLE.search(node.get("style") or ""):
                continue
            if name == "br":
                end_line(keep_empty=True)
            elif name in _BLOCKS:
                end_line(keep_empty=False)
                in_pre += name == "pre"
                stack.append(_LEAVE_PRE if name == "pre" else _LEAVE_BLOCK)
            elif name in _CELLS:
                stack.append(_LEAVE_CELL)
            stack.extend(reversed(node.contents))
    end_line(keep_empty=False)
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
    return text.split("\n") if text else []


def _squeeze(s: str) -> str:
    return " ".join(s.split())


# --- PDF ---------------------------------------------------------------------------------------


class _Notes(logging.Handler):
    def __init__(self, notes: list[str]):
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append(record.getMessage())


@contextlib.contextmanager
def _pypdf_notes():
    """pypdf logs what it cannot parse ("EOF marker not found") without naming the file: collect its
    warnings instead, so they reach the reason a file is skipped, which names it. What it repairs in a
    file that still reads is not worth a warning."""
    notes: list[str] = []
    logger, handler = logging.getLogger("pypdf"), _Notes(notes)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield notes
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def pdf_text(data: bytes, *, max_chars: int = MAX_TEXT_CHARS) -> Extracted:
    """A PDF's text layer, pages joined by a blank line, with the offset where each page starts.

    Refuses encrypted files it cannot open with an empty password, and files with no text at all
    (scans and other image-only PDFs, which would need OCR).
    """
    # pypdf: pure Python, maintained by the py-pdf project, no system libraries; the usual first choice
    from pypdf import PdfReader

    with _pypdf_notes() as notes:
        try:
            reader = PdfReader(io.BytesIO(data))
            # pypdf has already tried the empty password, which opens files that only restrict printing
            # or copying; anything else needs the password
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentUnreadable("the PDF is encrypted with a password; save an unprotected copy")
            texts, total = [], 0
            for page in reader.pages:
                texts.append((page.extract_text() or "").strip())
                total += len(texts[-1]) + 2
                if total > max_chars + 2:
                    raise too_long(max_chars)
        except DocumentUnreadable:
            raise
        except Exception as e:
            # pypdf raises its own errors, and on malformed files also ValueError, KeyError, TypeError and
            # more from deep inside: all mean the same here, and none may stop a build
            said = "".join(f"; {note}" for note in list(dict.fromkeys(notes))[:3])
            raise DocumentUnreadable(f"not a readable PDF ({_quote(e)}{said})") from e
    if not texts:
        raise DocumentUnreadable("the PDF has no pages")
    if not any(texts):
        raise DocumentUnreadable("the PDF has no text layer (scanned or image-only?); run OCR on it first")
    pages, pos = [], 0
    for text in texts:
        pages.append(pos)
        pos += len(text) + 2  # the blank line that joins it to the next page
    return Extracted("\n\n".join(texts), tuple(pages))
