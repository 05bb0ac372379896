"""The language model fields on the page: which server answers the next question, and the line that says
so under the fields."""

from __future__ import annotations

from rag import LLMSettings
from rag.config import LLM_TIMEOUT, url_problem

from .render import escape_md

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
        return f"⚠️ Not used: the URL {escape_md(problem)}. Answers are extracted meanwhile."
    who = f"`{escape_md(model.strip())}`" if (model or "").strip() else "the server's first model"
    return (
        f"Answers are written by {who} at {escape_md(url)} from the passages, with the extracted answer"
        " beside them; if the server fails, the extracted answer is shown with a notice."
    )
