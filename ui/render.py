"""How a reply looks in the chat: an :class:`rag.Answer` (or :class:`rag.GeneratedAnswer`) as Markdown, its
citations as source cards in HTML, and the page's CSS and theme. Plain functions of their arguments."""

from __future__ import annotations

import html
import re

import gradio as gr

from rag import Answer, Citation, GeneratedAnswer
from rag.types import write_marks

# Marks the message that holds the source cards, so it is not fed back to ask() as conversation.
SOURCES_CLASS = "rag-sources"

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$&!@])")
# a line starting "18." or "2019)" would be a numbered list: escape its punctuation, since CommonMark lets
# a backslash escape only ASCII punctuation (a backslash before "18." would show)
_LINE_MARKER = re.compile(r"^(\s*)(?:([-+=])|(\d+)([.)]))", re.M)
# GFM (the chat's Markdown) makes links of bare URLs and addresses: "www.", "https://", "a@b.org"
_AUTOLINK = re.compile(r"(?i)(www)(\.)|(:)(?=//)")
# the app's own citation marks: "[n]" as plain text, where Markdown cannot read it as a link
_CITE = re.compile(r"\\\[(\d+)\\\](?!\(|\\\[)")


def escape_md(text: str) -> str:
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


def render_answer(answer: Answer, words: int | None = None) -> str:
    """The reply as chat Markdown, from the answer's parts: the short answer in bold, then its supporting
    sentence, shown literally, and the reply's ``[n]`` marks; a decline as plain text. With ``words``,
    only that many words of what follows the short answer (the reply as it streams in), and no marks yet.
    """
    answered, pieces = _streamed(answer)
    shown = "".join(pieces if words is None else pieces[:words]).strip()
    text = escape_md(shown)
    if words is None and answer.marks:
        text += " " + write_marks(answer.marks)
    if not answered:
        return text
    return f"**{escape_md(answer.headline)}**" + (f"\n\n{text}" if text else "")


def stream_lengths(answer: Answer, steps: int) -> list[int | None]:
    """How many words :func:`render_answer` shows at each of about ``steps`` updates of a streamed reply:
    the short answer alone first (when there is one), then batches of words, then all of it (None)."""
    answered, pieces = _streamed(answer)
    n = len(pieces)
    size = max(1, -(-n // steps))
    return [*range(0 if answered else size, n, size), None]


def _streamed(answer: Answer) -> tuple[bool, list[str]]:
    """Whether the reply leads with a headline of its own (a short answer, or that the source is in
    English), and the words that stream after it (all of a decline)."""
    answered = not answer.abstained and bool(answer.short_answer or answer.support)
    body = (answer.support or "") if answered else answer.headline
    return answered, re.findall(r"\s*\S+", body)


def render_generated(result: GeneratedAnswer) -> str:
    """A generated reply as chat Markdown: the model's text, then the extracted short answer beside it,
    then the notices. A reply no model wrote is the extracted one under its notices."""
    notices = "\n\n".join(f"⚠️ _{escape_md(n)}_" for n in result.notices)
    if not result.generated:
        return "\n\n".join(x for x in (notices, render_answer(result.extracted)) if x)
    parts = [escape_md(result.text)]
    short = result.short_answer
    if short and not result.extracted.abstained:
        parts.append(f"Extracted answer: **{escape_md(short)}** [1]")
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
    # system fonts: the app runs offline, so nothing may be fetched from a font CDN. The CJK families
    # come before the generic fallback, so Chinese and Japanese questions show as characters wherever
    # one is installed (Debian: fonts-noto-cjk; macOS and Windows have theirs)
    font=[
        "system-ui",
        "-apple-system",
        "Segoe UI",
        "Roboto",
        "Noto Sans CJK SC",
        "Noto Sans CJK JP",
        "PingFang SC",
        "Hiragino Sans",
        "Microsoft YaHei",
        "sans-serif",
    ],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
)
