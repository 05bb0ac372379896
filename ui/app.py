"""The chat in the browser: a Gradio app over :func:`rag.ask`.

Everything a person sees is made by plain functions that tests call directly: :func:`respond` streams
a reply and :func:`converse` adds it to the chat; :func:`render_answer` and :func:`render_sources` turn
an :class:`rag.Answer` into the chat's Markdown and its source cards, and :func:`render_generated` a
:class:`rag.GeneratedAnswer` (when a language model server is set, :func:`page_llm`); :func:`check_upload` and
:meth:`Library.add` take in uploaded files. :func:`create_app` only wires them to components. Nothing
heavy happens at import: the index loads on first use (``python -m ui`` loads it before serving, with
progress in the terminal).
"""

from __future__ import annotations

import html
import os
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gradio as gr

from rag import Answer, Citation, GeneratedAnswer, Index, LLMSettings, RagError, ask, ask_stream, open_index
from rag.api import UPLOADS
from rag.config import LLM_TIMEOUT, MAX_QUESTION_CHARS, get_llm_settings, get_settings, url_problem
from rag.errors import DocumentUnreadable
from rag.question import message_text
from rag.readers import SUFFIXES, extract

TITLE = "Ask the documents"
EXAMPLES = [
    "When was the Northeast Asian Automotive Research Institute founded?",
    "Who led the district delegation that toured FAW's R&D institute?",
    "How many key cooperation projects were signed at the sister-cities conference?",
    "When did the Hongqi brand launch its first electric vehicle?",  # not in the documents: it says so
]
CONCURRENCY = 8  # chat requests answered at once; ask() is ~15 ms, so more would only queue on the CPU

# Streaming: the reply is ready in ~15 ms, so it is paced to read as typing, yet done in well under a second.
# Each update costs Gradio a few ms to send and the browser to render, so words go out in a few batches.
STREAM_SECONDS = 0.25  # pacing of the whole reply, however long
STREAM_STEPS = 8  # updates after the short answer
# A language model's tokens are shown as they come, but at most this often: each update re-sends the reply.
STREAM_INTERVAL = 0.05
WRITING = "_Writing the answer from the passages…_"

# Uploads: small files of the kinds the library reads, all checked before anything is written or indexed.
UPLOAD_SUFFIXES = SUFFIXES  # .txt .md .html .htm .pdf
MAX_UPLOAD_BYTES = 1_000_000  # a text or Markdown file; 1 MB is a book
# a PDF or a saved web page carries layout, fonts and images besides its text
MAX_UPLOAD_BYTES_BY_SUFFIX = {".pdf": 10_000_000, ".html": 10_000_000, ".htm": 10_000_000}
MAX_UPLOAD_FILES = 20
MAX_NAME_CHARS = 80
# UPLOADS: the folder under the index directory, and the id prefix of its documents
# Gradio's own cap on any upload; ours (upload_limit) is checked with a clearer message at or below it
SERVER_MAX_FILE_SIZE = "12mb"

# Marks the message that holds the source cards, so it is not fed back to ask() as conversation.
SOURCES_CLASS = "rag-sources"


# --- answering -----------------------------------------------------------------------------------


def respond(
    message: str | dict,
    history: list[dict] | None,
    *,
    index: Index | None = None,
    seconds: float = STREAM_SECONDS,
    llm: LLMSettings | None = None,
) -> Iterator[list[dict]]:
    """Answer ``message`` given the chat so far, as Gradio chat messages.

    Yields the reply as it grows (the short answer first, then a few words at a time), and finally the
    reply followed by a second message holding the numbered source cards. Invalid questions and
    library errors come back as a reply saying what to do; anything else is a bug and propagates.
    With ``llm``, the reply is written by that server's model and streams token by token
    (:func:`respond_generated`).
    """
    if llm is not None:
        yield from respond_generated(message, history, index=index, llm=llm)
        return
    try:
        answer = ask(message_text(message), history=conversation(history), index=index)
    except RagError as e:
        yield [assistant(f"⚠️ {_escape_md(str(e))}")]
        return
    pieces = _stream_pieces(answer)
    delay = seconds / max(len(pieces) - 1, 1)
    shown = ""
    for i, piece in enumerate(pieces):
        if i:
            time.sleep(delay)
        shown += piece
        yield [assistant(render_answer(answer, shown))]
    sources = render_sources(answer)
    yield [assistant(render_answer(answer))] + ([assistant(sources)] if sources else [])


def respond_generated(
    message: str | dict, history: list[dict] | None, *, index: Index | None = None, llm: LLMSettings
) -> Iterator[list[dict]]:
    """:func:`respond` with a language model: its words as they stream, then the finished reply (with
    the extracted answer beside it and any notice) and the source cards. When the server fails, even
    part-way, the last reply is the extracted answer under a notice saying why."""
    try:
        generation = ask_stream(message_text(message), history=conversation(history), index=index, llm=llm)
    except RagError as e:
        yield [assistant(f"⚠️ {_escape_md(str(e))}")]
        return
    if not generation.extracted.abstained:
        yield [assistant(WRITING)]  # the first token may take a while on a local CPU model
    shown, last = "", time.monotonic()
    for delta in generation:
        shown += delta
        if time.monotonic() - last >= STREAM_INTERVAL:
            last = time.monotonic()
            yield [assistant(_escape_md(shown))]
    result = generation.result()
    sources = render_sources(result.extracted, cited=cited_cards(result))
    yield [assistant(render_generated(result))] + ([assistant(sources)] if sources else [])


def converse(
    message: str,
    history: list[dict] | None,
    *,
    index: Index | None = None,
    seconds: float = STREAM_SECONDS,
    llm: LLMSettings | None = None,
) -> Iterator[list[dict]]:
    """The whole chat after ``message``: the history, the question, then the reply as :func:`respond`
    streams it. A blank message changes nothing (Enter on an empty box)."""
    history = list(history or [])
    if not message_text(message).strip():
        yield history
        return
    history.append({"role": "user", "content": message})
    yield history  # the question shows at once, before the answer is looked up
    for reply in respond(message, history[:-1], index=index, seconds=seconds, llm=llm):
        yield history + reply


def _stream_pieces(answer: Answer) -> list[str]:
    """The reply cut for streaming: the short answer (its first paragraph) whole, then batches of words."""
    text = answer.text
    head, sep, _ = text.partition("\n\n")
    first = head + sep if sep and not answer.abstained and answer.short_answer else ""
    words = re.findall(r"\s*\S+", text[len(first) :])
    size = max(1, -(-len(words) // STREAM_STEPS))
    batches = ["".join(words[i : i + size]) for i in range(0, len(words), size)]
    return ([first] if first else []) + batches or [text]


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def conversation(history: list[dict] | None) -> list[dict]:
    """The chat as ``ask()`` reads it: user and assistant text, without the source cards."""
    turns = []
    for msg in history or []:
        role = msg.get("role") if isinstance(msg, dict) else None
        text = message_text(msg.get("content")) if role in ("user", "assistant") else ""
        if text.strip() and SOURCES_CLASS not in text[:60]:
            turns.append({"role": role, "content": text})
    return turns


# --- rendering -----------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$&!@])")
# a line starting "18." or "2019)" would be a numbered list: escape its punctuation, since CommonMark lets
# a backslash escape only ASCII punctuation (a backslash before "18." would show)
_LINE_MARKER = re.compile(r"^(\s*)(?:([-+=])|(\d+)([.)]))", re.M)
# GFM (the chat's Markdown) makes links of bare URLs and addresses: "www.", "https://", "a@b.org"
_AUTOLINK = re.compile(r"(?i)(www)(\.)|(:)(?=//)")
# the app's own citation marks: "[n]" as plain text, where Markdown cannot read it as a link
_CITE = re.compile(r"\\\[(\d+)\\\](?!\(|\\\[)")


def _escape_md(text: str) -> str:
    """Text shown literally by Markdown (no HTML, links, images, emphasis or lists), keeping ``[n]``
    marks as plain text.

    Every character Markdown could read as syntax is backslash-escaped, and so is the punctuation that
    lets GFM see a URL or e-mail address in plain text. A ``[n]`` mark is left unescaped only where
    no ``(`` or ``[`` follows it (an inline or reference link); a ``:`` after it (a link definition)
    is escaped.
    """
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: f"{m[1]}\\." if m[1] else "\\:", text)
    text = _LINE_MARKER.sub(lambda m: m[1] + (f"\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}"), text)
    text = _CITE.sub(r"[\1]", text)
    return text.replace("]:", "]\\:")


def render_answer(answer: Answer, text: str | None = None) -> str:
    """The reply as chat Markdown; ``text`` is a streamed prefix of ``answer.text``.

    The short answer (the reply's first paragraph) is bold; everything else is shown literally.
    """
    text = answer.text if text is None else text
    if answer.abstained or not answer.short_answer or "\n\n" not in answer.text:
        return _escape_md(text)
    head, sep, rest = text.partition("\n\n")
    head = head.strip()
    return (f"**{_escape_md(head)}**" if head else "") + sep + _escape_md(rest)


def render_generated(result: GeneratedAnswer) -> str:
    """A generated reply as chat Markdown: the model's text, then the extracted short answer beside it,
    then the notices. A reply no model wrote is the extracted one under its notices."""
    notices = "\n\n".join(f"⚠️ _{_escape_md(n)}_" for n in result.notices)
    if not result.generated:
        return "\n\n".join(x for x in (notices, render_answer(result.extracted)) if x)
    parts = [_escape_md(result.text)]
    short = result.short_answer
    if short and not result.extracted.abstained:
        parts.append(f"Extracted answer: **{_escape_md(short)}** [1]")
    return "\n\n".join(x for x in (*parts, notices) if x)


def cited_cards(result: GeneratedAnswer) -> set[int]:
    """The cards a generated reply cites: its [n] marks, and [1] for the extracted answer beside it."""
    if not result.generated:
        return {int(n) for n in re.findall(r"\[(\d+)\]", result.extracted.text)}
    return set(result.cited) | ({1} if result.short_answer and not result.extracted.abstained else set())


def render_sources(answer: Answer, *, cited: set[int] | None = None) -> str:
    """The source cards below a reply, as one line of HTML (a blank line would end Markdown's HTML block).

    Card ``n`` is ``answer.citations[n-1]``, so the reply's ``[n]`` marks name it. Cards the reply cites
    (``cited``, by default the marks in ``answer.text``) are open, with the answer span highlighted; the
    other passages retrieved are folded away under them. After an abstention every passage is folded
    and offered as related reading only.
    """
    if not answer.citations:
        return ""
    numbered = list(enumerate(answer.citations, 1))
    if answer.abstained:
        head = "Related passages <small>(the closest found; they do not answer the question)</small>"
        cards = "".join(render_card(n, c, open_=False, highlight=False) for n, c in numbered)
        return f'<div class="{SOURCES_CLASS} related"><div class="rag-head">{head}</div>{cards}</div>'
    if cited is None:
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    shown = "".join(render_card(n, c, open_=True) for n, c in numbered if n in cited)
    rest = [render_card(n, c, open_=False) for n, c in numbered if n not in cited]
    if rest:
        label = f"{len(rest)} more passage{'s' * (len(rest) != 1)} retrieved"
        shown += f'<details class="rag-more"><summary>{label}</summary>{"".join(rest)}</details>'
    return f'<div class="{SOURCES_CLASS} cited"><div class="rag-head">Sources</div>{shown}</div>'


def render_card(n: int, c: Citation, *, open_: bool, highlight: bool = True) -> str:
    page = f"page {c.page}" if c.page else None
    meta = " · ".join(_one_line(x) for x in (c.date, c.source, page) if x)
    span = (c.answer_start, c.answer_end) if highlight and c.answer_start is not None else None
    return (
        f'<details class="rag-card"{" open" if open_ else ""}>'
        f'<summary><span class="rag-num">[{n}]</span> <span class="rag-title">{_one_line(c.title)}</span>'
        f'<span class="rag-meta">{meta}</span>'
        f'<span class="rag-snippet">{html.escape(_snippet(c.text))}</span></summary>'
        f'<blockquote class="rag-passage">{_passage_html(c.text, span)}</blockquote></details>'
    )


def _one_line(text: str) -> str:
    """Text as HTML on one line: a line break in a title or file name could end the cards' HTML block
    and hand the rest to Markdown."""
    return html.escape(" ".join(text.split()))


def _snippet(text: str, chars: int = 110) -> str:
    """The passage's opening words, to tell folded cards from the same article apart."""
    text = " ".join(text.split())
    return text if len(text) <= chars else text[:chars].rsplit(" ", 1)[0] + " …"


def _passage_html(text: str, span: tuple[int, int] | None) -> str:
    def lines(s: str) -> str:
        return re.sub(r"\n", "<br>", re.sub(r"\n[ \t]*\n\s*", "\n\n", html.escape(s)))

    if span is None or not (0 <= span[0] < span[1] <= len(text)):
        return lines(text.strip())
    a, b = span
    before, marked, after = text[:a], text[a:b], text[b:]
    return lines(before.lstrip()) + f"<mark>{lines(marked)}</mark>" + lines(after.rstrip())


# --- the index and uploads -----------------------------------------------------------------------


class UploadRejected(RagError):
    """An upload broke a limit; nothing was written or indexed. The message says which file and why."""


@dataclass(frozen=True)
class Upload:
    """An uploaded file that passed every check: its sanitised name and its bytes, stored as they came."""

    name: str
    data: bytes


def safe_name(name: str) -> str:
    """A file name safe to create in the uploads folder: no folders, no hidden files, plain characters.

    Returns "" when nothing usable is left. The suffix is lower-cased.
    """
    base = unicodedata.normalize("NFKC", re.split(r"[\\/]", name)[-1])
    stem, dot, suffix = base.rpartition(".")
    if not dot or not suffix.isascii() or not suffix.isalnum():
        return ""
    stem = re.sub(r"[^\w\-. ]+", "_", stem)
    stem = re.sub(r"\s+", " ", stem).strip(" ._-")[:MAX_NAME_CHARS].rstrip(" ._-")
    return f"{stem}.{suffix.lower()}" if stem else ""


def _big_limit() -> int:
    return max(MAX_UPLOAD_BYTES_BY_SUFFIX.values())


def upload_limit(name: str) -> int:
    """The largest upload accepted for a file of this name, in bytes."""
    return MAX_UPLOAD_BYTES_BY_SUFFIX.get(Path(name).suffix.lower(), MAX_UPLOAD_BYTES)


def check_upload(paths: list[str | Path] | None) -> list[Upload]:
    """Read and check uploaded files; raise :class:`UploadRejected` listing every problem.

    All or nothing: one bad file rejects the upload, so the index never holds half of it.
    """
    paths = [Path(p) for p in paths or []]
    if not paths:
        raise UploadRejected("no files were uploaded")
    if len(paths) > MAX_UPLOAD_FILES:
        raise UploadRejected(f"{len(paths)} files at once is too many: upload at most {MAX_UPLOAD_FILES}")
    uploads, problems = [], []
    for path in paths:
        shown = path.name
        name = safe_name(path.name)
        if not path.name.lower().endswith(UPLOAD_SUFFIXES):
            problems.append(f"{shown}: only {_kinds()} files can be added")
            continue
        if not name:
            problems.append(f"{shown}: the file name has no usable characters; rename it")
            continue
        try:
            size, limit = path.stat().st_size, upload_limit(name)
            if size > limit:
                problems.append(f"{shown}: {size / 1e6:.1f} MB is over the {limit / 1e6:g} MB limit")
                continue
            data = path.read_bytes()
        except OSError as e:
            problems.append(f"{shown}: cannot read it ({e.strerror or e})")
            continue
        try:
            # read it now, as the index will: a file that cannot be read is refused, not stored
            extract(data, Path(name).suffix)
        except DocumentUnreadable as e:
            problems.append(f"{shown}: {e}")
            continue
        uploads.append(Upload(name, data))
    if problems:
        raise UploadRejected("nothing was added. " + "; ".join(problems))
    return uploads


def _kinds(suffixes=UPLOAD_SUFFIXES) -> str:
    *most, last = sorted(suffixes, key=UPLOAD_SUFFIXES.index)
    return f"{', '.join(most)} and {last}" if most else last


class Library:
    """The documents the chat answers from: the source folder plus files uploaded from the page.

    Uploads are stored in ``<index_dir>/uploads`` and indexed with ids ``uploads/<name>``. The index
    is rebuilt incrementally after each upload and swapped in whole, under a lock, so a question asked
    meanwhile is answered from the old index or the new one, never from half of one.
    """

    def __init__(self, *, source: Path | None = None, index_dir: Path | None = None):
        self._source = Path(source) if source else None
        self._index_dir = Path(index_dir) if index_dir else None
        self._index: Index | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> Path:
        return self._source or get_settings().source_dir

    @property
    def index_dir(self) -> Path:
        return self._index_dir or get_settings().index_dir

    @property
    def uploads_dir(self) -> Path:
        return self.index_dir / UPLOADS

    @property
    def index(self) -> Index:
        """The current index, loading (or building) it on first use."""
        current = self._index
        return current if current is not None else self.load()

    def load(self, *, progress: bool = False) -> Index:
        """Load the index, building or updating it to match the documents."""
        with self._lock:
            if self._index is None:
                # pin the folders: a later change of environment must not move the index under us
                self._source, self._index_dir = self.source, self.index_dir
                self._index = self._build(progress=progress)
            return self._index

    def warm_up(self) -> None:
        """Answer one question, so the language models are loaded before the first person asks."""
        ask(EXAMPLES[0], index=self.index)

    def status(self) -> str:
        index = self.index
        docs, passages = index.num_documents, index.num_chunks
        return f"{docs} document{'s' * (docs != 1)}, {passages} passage{'s' * (passages != 1)} indexed"

    def _build(self, *, progress: bool) -> Index:
        return open_index(source=self.source, index_dir=self.index_dir, progress=progress)

    def add(self, uploads: list[Upload], *, progress: bool = False) -> str:
        """Store checked uploads and index them; return what happened, for the page.

        A name already taken by a different file gets a numbered name instead of replacing it. If
        indexing fails, the files written are removed again, leaving folder and index as they were.
        """
        self.load()
        with self._lock:
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            written: list[Path] = []
            notes: list[str] = []
            try:
                for up in uploads:
                    path, note = self._store(up)
                    if path is not None:
                        written.append(path)
                    notes.append(note)
                if written:
                    self._index = self._build(progress=progress)
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
            index = self._index
        documents = index.stored.manifest["documents"]
        counts = {f"{UPLOADS}/{p.name}": 0 for p in written}
        counts = {doc_id: documents.get(doc_id, {}).get("chunks", 0) for doc_id in counts}
        summary = ", ".join(
            f"{doc_id.removeprefix(UPLOADS + '/')} ({n} passage{'s' * (n != 1)})"
            for doc_id, n in counts.items()
        )
        head = f"Added {summary}: ask about {'them' if len(written) > 1 else 'it'} now." if written else ""
        return " ".join(x for x in [head, *notes] if x) or "Nothing new to add."

    def _store(self, up: Upload) -> tuple[Path | None, str]:
        """Write one upload under a free name; (None, note) when the same file is already there."""
        if safe_name(up.name) != up.name:
            raise ValueError(f"{up.name!r} is not a safe file name: pass uploads through check_upload()")
        stem, suffix = os.path.splitext(up.name)
        for n in range(1, 1000):
            name = up.name if n == 1 else f"{stem}-{n}{suffix}"
            path = self.uploads_dir / name
            try:
                with open(path, "xb") as f:
                    f.write(up.data)
            except FileExistsError:
                if path.read_bytes() == up.data:
                    return None, f"{name} was already added, unchanged."
                continue
            note = f"{up.name} was saved as {name}: a different {up.name} is already there." if n > 1 else ""
            return path, note
        raise UploadRejected(f"too many files named like {up.name}; rename it")


def add_documents(files: list[str] | None, library: Library, *, progress: bool = False) -> str:
    """Check and add uploaded files; the message for the page, whether they were added or refused.
    With ``progress``, indexing a large upload shows progress bars (tqdm; the page shows them too)."""
    try:
        return library.add(check_upload(files), progress=progress)
    except UploadRejected as e:
        return f"⚠️ Upload refused: {e}"
    except RagError as e:
        return f"⚠️ Upload failed, nothing was added: {e}"


# --- the language model settings on the page ------------------------------------------------------


FIXED_LLM_NOTE = (
    "This page is served to other machines, so the language model is the one set when the server started"
    " (`python -m ui --llm-base-url ...`)."
)


def page_llm(base_url: str | None, model: str | None, api_key: str | None, default: LLMSettings | None):
    """The server the page's fields name, or None (answers stay extractive) when the URL is blank or not
    a URL (:func:`llm_note` says so beside the field). The configured key goes only to the configured
    server: a page that names another URL must give its own key."""
    url = (base_url or "").strip()
    if not url or url_problem(url):
        return None
    same = default is not None and url == default.base_url
    return LLMSettings(
        base_url=url,
        model=(model or "").strip(),
        api_key=(api_key or "").strip() or (default.api_key if same else None),
        timeout=default.timeout if default else LLM_TIMEOUT,
    )


def llm_note(base_url: str | None, model: str | None) -> str:
    """The line under the language model fields: what answers the next question."""
    url = (base_url or "").strip()
    if not url:
        return "No language model: answers are extracted from the passages."
    problem = url_problem(url)
    if problem:
        return f"⚠️ Not used: the URL {_escape_md(problem)}. Answers are extracted meanwhile."
    who = f"`{_escape_md(model.strip())}`" if (model or "").strip() else "the server's first model"
    return (
        f"Answers are written by {who} at {_escape_md(url)} from the passages, with the extracted answer"
        " beside them; if the server fails, the extracted answer is shown with a notice."
    )


# --- the app -------------------------------------------------------------------------------------

CSS = """
.gradio-container { max-width: 960px !important; margin: 0 auto !important; }
#rag-status { color: var(--body-text-color-subdued); }
/* the page's side padding shrinks with the screen: a phone keeps its width for the answers */
.main.fillable { padding-left: clamp(6px, 2.5vw, 32px) !important;
  padding-right: clamp(6px, 2.5vw, 32px) !important; }
#rag-upload-note { font-size: 0.9em; color: var(--body-text-color-subdued); }
.rag-sources { font-size: 0.92em; margin-top: 0.9em; }
.rag-sources .rag-head { font-weight: 600; margin: 0 0 0.4em; }
.rag-sources.related .rag-head { color: var(--body-text-color-subdued); }
.rag-card { border: 1px solid var(--border-color-primary); border-radius: 8px; margin: 0.4em 0;
  background: var(--background-fill-secondary); overflow-wrap: anywhere; }
.rag-card > summary { cursor: pointer; padding: 0.45em 0.7em; list-style-position: inside; }
.rag-card > summary:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.rag-num { font-weight: 700; }
.rag-title { font-weight: 600; }
.rag-snippet { display: block; font-size: 0.85em; margin-left: 1.2em; color: var(--body-text-color-subdued);
  font-style: italic; }
.rag-card[open] .rag-snippet { display: none; }
.rag-meta { display: block; font-size: 0.85em; color: var(--body-text-color-subdued); margin-left: 1.2em; }
.rag-passage { margin: 0 0.7em 0.6em !important; padding: 0.2em 0 0.2em 0.7em !important;
  border-left: 3px solid var(--border-color-accent) !important; line-height: 1.5; }
.rag-passage mark { background: #ffe066; color: #1a1a1a; padding: 0 0.15em; border-radius: 3px; }
.rag-more > summary { cursor: pointer; color: var(--body-text-color-subdued); padding: 0.2em 0; }
.rag-more > summary:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 2px; }
@media (max-width: 480px) {
  .rag-passage { margin: 0 0.4em 0.5em !important; }
}
"""
THEME = gr.themes.Soft(
    # system fonts: the app runs offline, so nothing may be fetched from a font CDN
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)


def launch_options() -> dict:
    """What ``launch()`` needs besides host and port (Gradio 6 takes theme and CSS there)."""
    return {
        "theme": THEME,
        "css": CSS,
        "share": False,
        "ssr_mode": False,
        "max_file_size": SERVER_MAX_FILE_SIZE,
    }


def create_app(
    library: Library | None = None,
    *,
    llm: LLMSettings | Literal["env"] | None = "env",
    llm_editable: bool = True,
) -> gr.Blocks:
    """The chat page: status line, chat with examples, language model settings and document upload.
    Loads nothing itself.

    ``llm`` (``"env"``: the configured server, ``RAG_LLM_BASE_URL``...; None: none) fills the page's
    language model fields, which each visitor may change for their own session, and answers the
    ``/chat`` endpoint. With ``llm_editable`` false the fields are read-only and whatever a page sends
    for them is ignored: a page served to other machines must not make this one call any URL.
    The chat is one streamed event per question (not ``gr.ChatInterface``, whose chain of three
    events per question costs about 100 ms before the first word). Scripts get the same answers
    from the ``/chat`` endpoint, which keeps each client's conversation in its session.
    """
    library = library or Library()
    llm = get_llm_settings() if llm == "env" else llm

    def chosen(url: str, model: str, key: str) -> LLMSettings | None:
        return page_llm(url, model, key, llm) if llm_editable else llm

    def ask_in_chat(message: str, history: list[dict], url: str, model: str, key: str):
        for chat in converse(message, history, index=library.index, llm=chosen(url, model, key)):
            yield "", chat

    def ask_example(history: list[dict], url: str, model: str, key: str, example: gr.SelectData):
        yield from converse(example.value["text"], history, index=library.index, llm=chosen(url, model, key))

    def ask_api(message: str, history: list[dict] | None):
        history = history or []
        for chat in converse(message, history, index=library.index, llm=llm):
            if len(chat) > len(history) + 1:  # a script wants the reply, not its own question back
                yield chat[len(history) + 1 :], chat

    def upload(files: list[str] | None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's way)
        # a big PDF can take a while to embed: its progress bar shows on the page
        return add_documents(files, library, progress=True), library.status()

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}")
        # filled on page load, not here: building the app must not load the index
        status = gr.Markdown("Loading the index…", label="index status", elem_id="rag-status")
        chatbot = gr.Chatbot(
            label="Chat",
            show_label=False,
            height="62vh",
            min_height=320,
            latex_delimiters=[],  # "$" in a news article is money, not maths
            buttons=["copy", "copy_all"],
            placeholder="Answers quote the passage they come from. Try an example, or type a question below.",
            examples=[{"text": q} for q in EXAMPLES],
            elem_id="rag-chat",
        )
        question = gr.Textbox(
            placeholder="Ask a question about the documents",
            show_label=False,
            max_length=MAX_QUESTION_CHARS,
            autofocus=True,
            submit_btn="Ask",
            elem_id="rag-question",
        )
        with gr.Accordion("Language model (optional)", open=False, elem_id="rag-llm"):
            with gr.Row():
                llm_url = gr.Textbox(
                    value=llm.base_url if llm else "",
                    label="Server URL (OpenAI-compatible)",
                    placeholder="http://127.0.0.1:8080/v1 - empty: answers are extracted only",
                    interactive=llm_editable,
                    elem_id="rag-llm-url",
                )
                llm_model = gr.Textbox(
                    value=llm.model if llm else "",
                    label="Model",
                    placeholder="empty: the server's first model",
                    interactive=llm_editable,
                    elem_id="rag-llm-model",
                )
                # never sent to the page: the configured key stays on the server
                llm_key = gr.Textbox(
                    label="API key",
                    type="password",
                    placeholder="the configured key"
                    if llm and llm.api_key
                    else "none needed for a local server",
                    interactive=llm_editable,
                    visible=llm_editable,
                    elem_id="rag-llm-key",
                )
            note = gr.Markdown(
                llm_note(llm.base_url if llm else "", llm.model if llm else "")
                + ("" if llm_editable else f" {FIXED_LLM_NOTE}"),
                elem_id="rag-llm-note",
            )
            if llm_editable:
                for field in (llm_url, llm_model):
                    field.change(
                        llm_note, [llm_url, llm_model], note, api_visibility="undocumented", queue=False
                    )
        fields = [llm_url, llm_model, llm_key]

        chat_options = {"concurrency_limit": CONCURRENCY, "concurrency_id": "chat", "show_progress": "hidden"}
        question.submit(
            ask_in_chat,
            [question, chatbot, *fields],
            [question, chatbot],
            api_visibility="undocumented",
            **chat_options,
        )
        chatbot.example_select(
            ask_example, [chatbot, *fields], chatbot, api_visibility="undocumented", **chat_options
        )
        # the trash button empties the chat in the browser; nothing is kept on the server to forget
        chatbot.clear(lambda: [], None, chatbot, api_visibility="undocumented", queue=False)

        with gr.Column():
            button = gr.UploadButton(
                "Add your own documents",
                file_types=list(UPLOAD_SUFFIXES),
                file_count="multiple",
                size="md",
            )
            gr.Markdown(
                f"{_kinds()} (text as UTF-8), up to {MAX_UPLOAD_FILES} files of at most"
                f" {MAX_UPLOAD_BYTES / 1e6:g} MB each"
                f" ({_kinds(MAX_UPLOAD_BYTES_BY_SUFFIX)}: {_big_limit() / 1e6:g} MB)."
                " They are indexed at once and can be cited.",
                elem_id="rag-upload-note",
            )
            result = gr.Markdown(label="upload result", elem_id="rag-upload-result")
        button.upload(upload, button, [result, status], api_name="upload", concurrency_limit=1)
        demo.load(library.status, None, status, api_visibility="undocumented")

        # the /chat endpoint for scripts: (message) -> the new assistant messages, reply then sources
        api_message = gr.Textbox(visible=False, label="message")
        api_history = gr.State([])
        api_response = gr.JSON(visible=False, label="response")
        gr.Button(visible=False).click(
            ask_api,
            [api_message, api_history],
            [api_response, api_history],
            api_name="chat",
            api_description="Answer a question from the documents; returns the reply and its source cards.",
            **chat_options,
        )
    return demo


demo = create_app()
