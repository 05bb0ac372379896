"""The chat in the browser: a Gradio app over :func:`rag.ask`, wired from plain functions by job.

:mod:`ui.chat` streams a reply (:func:`respond`) and adds it to the chat (:func:`converse`);
:mod:`ui.render` turns an :class:`rag.Answer` into the chat's Markdown and its source cards;
:mod:`ui.llm_fields` reads the language model fields of the page; :mod:`ui.library` checks, stores and
indexes uploads, privately for each browser session by default; :mod:`ui.guard` refuses requests from other
web pages. :func:`create_app` only wires them to components. Nothing heavy happens at import: the index
loads on first use (``python -m ui`` loads it before serving, with progress in the terminal).
"""

from __future__ import annotations

from typing import Literal

import gradio as gr
from starlette.middleware import Middleware

from rag import LLMSettings
from rag.config import MAX_QUESTION_CHARS, get_llm_settings
from rag.question import message_text

from .chat import clean, conversation, converse, respond, respond_generated
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
from .llm_fields import FIXED_LLM_NOTE, llm_note, page_llm
from .render import CSS, SOURCES_CLASS, THEME, render_answer, render_generated, render_sources
from .sessions import Sessions

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
    "SOURCES_CLASS",
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
    "Which district leaders took part in the Jiaojiang delegation's inspection?",
    "Who delivered speeches at the opening ceremony of the 2023 conference?",
    "How many cars did Hongqi sell in 2022?",  # not in the documents: it says so
]
CONCURRENCY = 8  # chat requests answered at once; ask() is ~15 ms, so more would only queue on the CPU

# Gradio's own cap on any upload; ours (upload_limit) is checked with a clearer message at or below it
SERVER_MAX_FILE_SIZE = "12mb"
# Gradio's cache of posted files: swept every 10 minutes of those older than an hour (frequency, age in s)
DELETE_CACHE = (600, 3600)


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
