"""The chat in the browser: a Gradio app over :func:`rag.ask`.

Everything a person sees is made by plain functions that tests call directly: :func:`respond` streams
a reply and :func:`converse` adds it to the chat; :func:`render_answer` and :func:`render_sources` turn
an :class:`rag.Answer` into the chat's Markdown and its source cards, and :func:`render_generated` a
:class:`rag.GeneratedAnswer` (when a language model server is set, :func:`page_llm`). Uploads are
checked, stored and indexed by :mod:`ui.library`, privately for each browser session by default;
:mod:`ui.guard` refuses requests from other web pages. :func:`create_app` only wires them to components.
Nothing heavy happens at import: the index loads on first use (``python -m ui`` loads it before
serving, with progress in the terminal).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from typing import Literal

import gradio as gr
from starlette.middleware import Middleware

from rag import Answer, Citation, GeneratedAnswer, Index, LLMSettings, RagError, ask, ask_stream
from rag.api import clean_text
from rag.config import LLM_TIMEOUT, MAX_QUESTION_CHARS, get_llm_settings, url_problem
from rag.question import message_text

from .guard import LOOPBACK, SameOrigin
from .library import (
    EXAMPLE_QUESTION,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_BYTES_BY_SUFFIX,
    MAX_UPLOAD_FILES,
    MAX_UPLOAD_TEXT_CHARS,
    SESSION_IDLE_SECONDS,
    SESSION_MAX_BYTES,
    SESSION_MAX_FILES,
    UPLOAD_SUFFIXES,
    Library,
    Sessions,
    Upload,
    UploadRejected,
    add_documents,
    big_limit,
    check_upload,
    kinds,
    remove_document,
    safe_name,
    upload_limit,
)

__all__ = [
    "respond",
    "respond_generated",
    "converse",
    "conversation",
    "render_answer",
    "render_generated",
    "render_sources",
    "page_llm",
    "llm_note",
    "upload_note",
    "create_app",
    "launch_options",
    "demo",
    # the documents, from ui.library
    "Library",
    "Sessions",
    "Upload",
    "UploadRejected",
    "add_documents",
    "remove_document",
    "check_upload",
    "safe_name",
    "upload_limit",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_FILES",
    "MAX_UPLOAD_TEXT_CHARS",
]

TITLE = "Ask the documents"
EXAMPLES = [
    EXAMPLE_QUESTION,
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

# Gradio's own cap on any upload; ours (upload_limit) is checked with a clearer message at or below it
SERVER_MAX_FILE_SIZE = "12mb"
# Gradio's cache of posted files: swept every 10 minutes of those older than an hour (frequency, age in s)
DELETE_CACHE = (600, 3600)

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
    message = clean(message)
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
    message = clean(message)
    if not message_text(message).strip():
        yield history
        return
    history.append({"role": "user", "content": message})
    yield history  # the question shows at once, before the answer is looked up
    for reply in respond(message, history[:-1], index=index, seconds=seconds, llm=llm):
        yield history + reply


def clean(message: str | dict) -> str | dict:
    """The message with what cannot be encoded (lone surrogates a script can send, NUL) replaced by
    U+FFFD, as :func:`rag.api.clean_text` does for ``ask()``: else the chat could show neither the
    question nor any reply to it."""
    return clean_text(message) if isinstance(message, str) else message


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
        return extracted_cards(result.extracted)
    return set(result.cited) | ({1} if result.short_answer and not result.extracted.abstained else set())


def extracted_cards(answer: Answer) -> set[int]:
    """The cards an extracted reply cites: those holding its answer (its ``[1]``), read from the citations'
    fields. Never from the reply's text, which quotes the documents: a ``[3]`` written in a passage must
    not make card 3 look cited."""
    if answer.abstained:
        return set()
    return {n for n, c in enumerate(answer.citations, 1) if c.answer_start is not None}


def render_sources(answer: Answer, *, cited: set[int] | None = None) -> str:
    """The source cards below a reply, as one line of HTML (a blank line would end Markdown's HTML block).

    Card ``n`` is ``answer.citations[n-1]``, so the reply's ``[n]`` marks name it. Cards the reply cites
    (``cited``, by default :func:`extracted_cards`) are open, with the answer span highlighted; the
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
        cited = extracted_cards(answer)
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


# --- the language model settings on the page ------------------------------------------------------


FIXED_LLM_NOTE = (
    "Answers are written by the language model set when the server started, from the passages, with the"
    " extracted answer beside them; if it fails, the extracted answer is shown with a notice."
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


def launch_options(*, host: str = "127.0.0.1", origins: tuple[str, ...] = ()) -> dict:
    """What ``launch()`` needs besides host and port (Gradio 6 takes theme and CSS there), for a server
    listening on ``host``: requests from other web pages are refused (:mod:`ui.guard`), except from
    ``origins`` (a reverse proxy's public address, ``https://chat.example.org``)."""
    guard = Middleware(SameOrigin, local=host in LOOPBACK, origins=origins)
    return {
        "theme": THEME,
        "css": CSS,
        "share": False,
        "ssr_mode": False,
        "max_file_size": SERVER_MAX_FILE_SIZE,
        "app_kwargs": {"middleware": [guard]},
    }


def upload_note(shared: bool) -> str:
    """What the page says under the upload button: the kinds and sizes taken, and who sees the files."""
    sizes = (
        f"{kinds()} (text as UTF-8), up to {MAX_UPLOAD_FILES} files at once of at most"
        f" {MAX_UPLOAD_BYTES / 1e6:g} MB each ({kinds(MAX_UPLOAD_BYTES_BY_SUFFIX)}: {big_limit() / 1e6:g} MB)"
        f" and {MAX_UPLOAD_TEXT_CHARS / 1e6:g} million characters of text in all."
    )
    if shared:
        return f"{sizes} They are indexed at once and shared: every visitor can ask about and remove them."
    return (
        f"{sizes} They are indexed at once, for you only: other visitors do not see them, and they are"
        f" dropped when you close or reload this page, or after {SESSION_IDLE_SECONDS // 60} minutes"
        f" without a question. You may keep {SESSION_MAX_FILES} documents, {SESSION_MAX_BYTES / 1e6:g} MB"
        " in all."
    )


def _key(request: gr.Request | None) -> str | None:
    """The browser session (or gradio_client) a request comes from."""
    return getattr(request, "session_hash", None)


def create_app(
    library: Library | None = None,
    *,
    llm: LLMSettings | Literal["env"] | None = "env",
    llm_editable: bool = True,
    shared_uploads: bool = False,
    sessions: Sessions | None = None,
) -> gr.Blocks:
    """The chat page: status line, chat with examples, language model settings and document upload.
    Loads nothing itself.

    ``llm`` (``"env"``: the configured server, ``RAG_LLM_BASE_URL``...; None: none) fills the page's
    language model fields, which each visitor may change for their own session, and answers the
    ``/chat`` endpoint. With ``llm_editable`` false the fields are hidden and empty, and whatever a page
    sends for them is ignored: a page served to other machines must not make this one call any URL,
    nor learn it.

    Uploads are private to the browser session (``sessions``, by default :class:`Sessions` over
    ``library`` with its limits): each session answers from the library plus its own uploads, dropped
    when the page is closed or reloaded or after an hour idle. With ``shared_uploads``, uploads go into
    ``library`` itself, for every visitor (and ``python -m rag``) to see and remove.

    The chat is one streamed event per question (not ``gr.ChatInterface``, whose chain of three
    events per question costs about 100 ms before the first word). Scripts get the same answers
    from the ``/chat`` endpoint, which keeps each client's conversation, and uploads, in its session.
    """
    library = library or Library()
    llm = get_llm_settings() if llm == "env" else llm
    if shared_uploads:
        sessions = None
    elif sessions is None:
        sessions = Sessions(library)

    def docs(request: gr.Request | None) -> Library:
        return library if sessions is None else sessions.get(_key(request))

    def chosen(url: str, model: str, key: str) -> LLMSettings | None:
        return page_llm(url, model, key, llm) if llm_editable else llm

    def ask_in_chat(message: str, history: list[dict], url: str, model: str, key: str, request: gr.Request):
        index = docs(request).index
        for chat in converse(message, history, index=index, llm=chosen(url, model, key)):
            yield "", chat

    def ask_example(
        history: list[dict], url: str, model: str, key: str, example: gr.SelectData, request: gr.Request
    ):
        index = docs(request).index
        yield from converse(example.value["text"], history, index=index, llm=chosen(url, model, key))

    def ask_api(message: str, history: list[dict] | None, request: gr.Request):
        history = history or []
        message = clean(message)
        asked = [{"role": "user", "content": message}] if message_text(message).strip() else []
        for reply in respond(message, history, index=docs(request).index, llm=llm):
            # a blank question gets its message too, but does not join the conversation
            yield reply, (history + asked + reply) if asked else history

    def uploaded(lib: Library):
        names = lib.uploads() if sessions is None or lib is not library else []
        return gr.Dropdown(choices=names, value=None, interactive=bool(names))

    def show(request: gr.Request):
        lib = docs(request)
        return lib.status(), uploaded(lib)

    def upload(files: list[str] | None, request: gr.Request, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's way)
        try:
            lib = library if sessions is None else sessions.own(_key(request))
        except UploadRejected as e:
            note, lib = f"⚠️ Upload refused: {e}", docs(request)
        else:
            # a big PDF can take a while to embed: its progress bar shows on the page
            note = add_documents(files, lib, progress=True)
        return note, lib.status(), uploaded(lib)

    def remove(name: str | None, request: gr.Request):
        lib = docs(request)
        if sessions is not None and lib is library:
            note = remove_document(None, lib) if not name else f"⚠️ Not removed: {name} is not one of yours."
        else:
            note = remove_document(name, lib)
        return note, lib.status(), uploaded(lib)

    def end(request: gr.Request):
        if sessions is not None:
            sessions.drop(_key(request))

    # Gradio keeps each file posted to its upload route in its cache; these go after an hour
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
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
                # a page served to other machines neither shows nor takes a URL: the fields are empty there
                llm_url = gr.Textbox(
                    value=llm.base_url if llm and llm_editable else "",
                    label="Server URL (OpenAI-compatible)",
                    placeholder="http://127.0.0.1:8080/v1 - empty: answers are extracted only",
                    interactive=llm_editable,
                    visible=llm_editable,
                    elem_id="rag-llm-url",
                )
                llm_model = gr.Textbox(
                    value=llm.model if llm and llm_editable else "",
                    label="Model",
                    placeholder="empty: the server's first model",
                    interactive=llm_editable,
                    visible=llm_editable,
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
            if llm_editable:
                shown = llm_note(llm.base_url if llm else "", llm.model if llm else "")
            else:
                shown = FIXED_LLM_NOTE if llm else llm_note("", "")
            note = gr.Markdown(shown, elem_id="rag-llm-note")
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
            gr.Markdown(upload_note(shared_uploads), elem_id="rag-upload-note")
            result = gr.Markdown(label="upload result", elem_id="rag-upload-result")
            with gr.Row(equal_height=True):
                # only this session's uploads (every upload, with shared_uploads)
                choice = gr.Dropdown(
                    choices=[],
                    label="Your documents" if sessions is not None else "Uploaded documents",
                    interactive=False,
                    allow_custom_value=True,  # Library.remove checks the name against its own listing
                    scale=4,
                    elem_id="rag-uploads",
                )
                drop = gr.Button("Remove", size="md", scale=1, elem_id="rag-remove")
        upload_options = {"concurrency_limit": 1, "concurrency_id": "upload"}  # one index build at a time
        button.upload(upload, button, [result, status, choice], api_name="upload", **upload_options)
        drop.click(remove, choice, [result, status, choice], api_name="remove", **upload_options)
        demo.load(show, None, [status, choice], api_visibility="undocumented")
        demo.unload(end)

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
