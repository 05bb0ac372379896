"""Generated answers: the prompt, the citation filter and the fallbacks, against a scripted fake server.

The extractive half is real (the session's index of seeds/); the server is :mod:`fake_llm`, so each test
decides exactly what the model says or how it fails. The real llama.cpp server is in test_llm_server.py.
"""

from __future__ import annotations

import random
import socket
import time

import pytest
from fake_llm import Cut, FakeLLM, Garbage, Say, Sleep, Status

import rag
from rag import LLMSettings, ask, ask_stream, generate_answer
from rag.config import get_llm_settings
from rag.errors import LLMUnavailable
from rag.generate import (
    DECLINE,
    CitationFilter,
    build_messages,
    contains,
    filter_citations,
    parse_rewrite,
    rewrite_messages,
)
from rag.llm import api_root, chat_stream

MAYOR = "Who is the Mayor of Changchun City?"
MAYOR_DOC = "003_77923ca0126b27a7.txt"
REWRITTEN = "Which conference did Wang Zilian, Mayor of Changchun City, preside over?"


def settings(fake: FakeLLM, **kw) -> LLMSettings:
    return LLMSettings(base_url=fake.url, **{"timeout": 5.0, **kw})


def streamed(generation) -> list[str]:
    return list(generation)


# --- the prompt ----------------------------------------------------------------------------------


def test_prompt_numbers_the_passages_in_citation_order(seeds_index):
    answer = ask(MAYOR, index=seeds_index)
    system, user = build_messages(MAYOR, answer.citations)
    assert system["role"] == "system" and DECLINE in system["content"] and "[1]" in system["content"]
    assert user["role"] == "user" and user["content"].rstrip().endswith(f"Question: {MAYOR}")
    body = user["content"]
    positions = [body.index(f"[{n}] {c.title}") for n, c in enumerate(answer.citations, 1)]
    assert positions == sorted(positions), "passage n is citations[n-1], in order"
    assert f"[{len(answer.citations) + 1}]" not in body
    # each passage's text is given whole (white space collapsed)
    for c in answer.citations:
        assert " ".join(c.text.split()) in body


def test_rewrite_prompt_shows_the_recent_turns_without_marks():
    history = [
        {"role": "user", "content": MAYOR},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Wang Zilian.\n\nHe presided over it. [1]"}],
        },
    ]
    _, user = rewrite_messages("What did he preside over?", history)
    assert f"User: {MAYOR}" in user["content"]
    assert "Assistant: Wang Zilian. He presided over it." in user["content"] and "[1]" not in user["content"]
    assert "Last question: What did he preside over?" in user["content"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (REWRITTEN, REWRITTEN),
        (f"Rewritten question: {REWRITTEN}\nExplanation: ...", REWRITTEN),
        (f'"{REWRITTEN}"', REWRITTEN),
        # an answer, not a question
        ("The conference was presided over by Wang Zilian.", "What did he preside over?"),
        ("", "What did he preside over?"),
        ("Why? " * 200, "What did he preside over?"),  # runaway
    ],
)
def test_parse_rewrite_keeps_only_a_question(reply, expected):
    assert parse_rewrite(reply, "What did he preside over?") == expected


# --- the citation filter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown", "cited", "dropped"),
    [
        ("Founded in 2021 [1].", "Founded in 2021 [1].", [1], []),
        ("Founded in 2021 [1] by X [7].", "Founded in 2021 [1] by X.", [1], [7]),
        ("A [0] and B [6] [5]", "A and B [5]", [5], [0, 6]),
        ("Both say so [1, 2].", "Both say so [1][2].", [1, 2], []),
        ("See [Passage 3] and [passages 1 and 9].", "See [3] and [1].", [3, 1], [9]),
        ("Range [2-4].", "Range [2][3][4].", [2, 3, 4], []),
        ("Backwards [4-2], far [1-90].", "Backwards [4][2], far [1].", [4, 2, 1], [90]),
        ("No marks [citation needed] here.", "No marks [citation needed] here.", [], []),
        ("An unclosed [2 at the end", "An unclosed [2 at the end", [], []),
        ("Twice [2][2] then [1].", "Twice [2][2] then [1].", [2, 1], []),
    ],
)
def test_filter_keeps_only_marks_of_passages_given(text, shown, cited, dropped):
    assert filter_citations(text, 5) == (shown, cited, dropped)


def test_filter_gives_the_same_text_however_the_stream_is_cut():
    text = (
        "The institute [1] was founded on March 31, 2021 [1, 7]. It was signed in Changchun [Passage 2] "
        "by  officials [12]; others [citation needed] disagree [3-4].\nAlso [5]\n[ 2 ] end [9"
    )
    whole = filter_citations(text, 5)
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 40)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        f = CitationFilter(5)
        out = "".join(f.feed(p) for p in pieces) + f.flush()
        assert (out, f.cited, f.dropped) == whole, pieces


def test_filter_never_shows_an_invalid_mark_even_for_a_moment():
    f = CitationFilter(2)
    shown = ""
    for piece in ["Founded ", "in 2021 [", "3", "]", " and [", "1", "]."]:
        shown += f.feed(piece)
        assert "[3" not in shown
    shown += f.flush()
    assert shown == "Founded in 2021 and [1]."


def test_contains_compares_normalised_words():
    assert contains("It opened on March 31, 2021 [1].", "March 31, 2021")
    assert contains("The FAW Group's plan", "FAW Group")
    assert not contains("In 2021 [1].", "March 31, 2021")
    assert not contains("a 120-page plan", "20")
    assert not contains("anything", "")


# --- configuration -------------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_flags_win(monkeypatch):
    for name in ("RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_LLM_API_KEY", "RAG_LLM_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    assert get_llm_settings() is None, "nothing configured: extractive only"
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:11434")
    monkeypatch.setenv("RAG_LLM_MODEL", "qwen")
    monkeypatch.setenv("RAG_LLM_API_KEY", "sk-env")
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "12.5")
    env = get_llm_settings()
    assert env == LLMSettings("http://127.0.0.1:11434", "qwen", "sk-env", 12.5)
    assert get_llm_settings(model="llama", timeout=3) == LLMSettings(
        "http://127.0.0.1:11434", "llama", "sk-env", 3
    )
    # the environment's key never goes to a server the environment did not name
    other = get_llm_settings(base_url="http://127.0.0.1:9999/v1")
    assert other.api_key is None and other.model == "qwen"
    assert get_llm_settings(base_url="http://127.0.0.1:9999/v1", api_key="sk-own").api_key == "sk-own"
    assert "sk-env" not in repr(env)
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="RAG_LLM_TIMEOUT"):
        get_llm_settings()


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"base_url": "localhost:8080"}, "http://"),
        ({"base_url": "http://[::1"}, "not a valid URL"),
        ({"base_url": "http://host:port/v1"}, "not a valid URL"),
        ({"base_url": "http://exa mple/v1"}, "no valid host"),
        ({"base_url": "http:///v1"}, "no valid host"),
        ({"timeout": 0}, "positive"),
    ],
)
def test_bad_settings_are_refused(kw, says):
    with pytest.raises(ValueError, match=says):
        LLMSettings(**{"base_url": "http://127.0.0.1:1", **kw})


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1"),
        ("https://example.org/openai/v1", "https://example.org/openai/v1"),
    ],
)
def test_api_root(url, root):
    assert api_root(url) == root


# --- answers through the fake server -------------------------------------------------------------


def test_stream_is_grounded_and_asks_for_it_properly(fake, seeds_index):
    fake.then(
        Say(
            "The mayor is Wang Zilian [1].",
            pieces=("The", " mayor is Wang", " Zilian [", "1]."),
        )
    )
    gen = ask_stream(MAYOR, index=seeds_index, llm=settings(fake, api_key="sk-test"))
    deltas = streamed(gen)
    result = gen.result()
    assert len(deltas) >= 3, "the answer streams in pieces"
    assert "".join(deltas) == result.text == "The mayor is Wang Zilian [1]."
    assert result.generated and result.grounded and not result.disagrees and not result.abstained
    assert result.cited == (1,) and result.notices == ()
    assert result.extracted == ask(MAYOR, index=seeds_index)
    assert result.citations[0].source == MAYOR_DOC and result.short_answer == "Wang Zilian"

    (request,) = fake.requests
    assert request["path"] == "/v1/chat/completions" and request["stream"] is True
    assert request["model"] == "fake-model", "no model named: the server's first"
    assert request["temperature"] == 0 and request["max_tokens"] == 400
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert request["messages"] == build_messages(MAYOR, result.citations)


def test_marks_naming_no_passage_never_reach_the_reader(fake, seeds_index):
    fake.then(Say("The mayor is Wang Zilian [1][7], in Changchun [12] [2]."))
    gen = ask_stream(MAYOR, index=seeds_index, llm=settings(fake, model="m"))
    deltas = streamed(gen)
    result = gen.result()
    assert "[7]" not in "".join(deltas) and "[12]" not in "".join(deltas)
    assert result.text == "The mayor is Wang Zilian [1], in Changchun [2]."
    assert result.cited == (1, 2) and result.dropped == (7, 12) and result.grounded
    assert any("2 citation marks" in n for n in result.notices)
    assert fake.requests[0]["model"] == "m"


def test_an_answer_without_a_valid_citation_is_not_grounded(fake, seeds_index):
    fake.then(Say("The mayor is Wang Zilian [9]."))
    result = generate_answer(MAYOR, index=seeds_index, llm=settings(fake))
    assert result.generated and not result.grounded and result.cited == () and result.dropped == (9,)
    assert result.text == "The mayor is Wang Zilian."
    assert any("not grounded" in n for n in result.notices)


def test_disagreement_with_the_extracted_answer_is_said(fake, seeds_index):
    fake.then(Say("It was founded in 1999 [1]."))
    result = generate_answer(MAYOR, index=seeds_index, llm=settings(fake))
    assert result.grounded and result.disagrees
    assert any("“Wang Zilian” [1]" in n and "check the sources" in n for n in result.notices)


def test_the_model_declining_counts_as_abstaining(fake, seeds_index):
    fake.then(Say("The answer is not in the documents."))
    result = generate_answer(MAYOR, index=seeds_index, llm=settings(fake))
    assert result.generated and result.declined and result.abstained and not result.grounded
    assert not result.extracted.abstained and result.short_answer == "Wang Zilian"
    assert any("no answer in the passages" in n for n in result.notices)


def test_when_the_documents_do_not_answer_the_model_is_not_asked(fake, seeds_index):
    result = generate_answer("What is the capital of Mars?", index=seeds_index, llm=settings(fake))
    assert fake.requests == []
    assert result.abstained and not result.generated and result.notices == ()
    assert result.text == ask("What is the capital of Mars?", index=seeds_index).text


def test_with_no_server_configured_it_is_the_extractive_answer(seeds_index, monkeypatch):
    monkeypatch.delenv("RAG_LLM_BASE_URL", raising=False)
    gen = ask_stream(MAYOR, index=seeds_index)
    assert streamed(gen) == []
    result = gen.result()
    assert result.text == ask(MAYOR, index=seeds_index).text and not result.generated


def test_the_configured_server_is_used_by_default(fake, seeds_index, monkeypatch):
    monkeypatch.setenv("RAG_LLM_BASE_URL", fake.url)
    fake.then(Say("Wang Zilian [1]."))
    assert generate_answer(MAYOR, index=seeds_index).grounded


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


FAILURES = {
    "HTTP 500": (Status(500), "answered HTTP 500"),
    "HTTP 404": (Status(404, '{"error": {"message": "model not found"}}'), "HTTP 404 (model not found)"),
    "html": (Garbage(), "not a chat completion"),
    "junk events": (Garbage(b"data: {not json\n\n", stream_lines=True), "not a chat completion"),
    "wrong json": (Garbage(b'data: {"choices": "nope"}\n\n', stream_lines=True), "not a chat completion"),
    "silence": (Sleep(3, Say("too late [1]")), "did not reply in time"),
    "slow stream": (Say("one two three four five six seven eight [1]", delay=0.25), "had not finished"),
    "killed mid-answer": (Cut(("It was", " founded")), "broke off"),
    "never finishes": (Say("It was founded [1]", finish=None), "broke off"),
    "empty": (Say("", pieces=()), "empty reply"),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c in ("silence", "slow stream") else c for c in FAILURES],
)
def test_any_server_failure_gives_the_extracted_answer_with_a_notice(fake, seeds_index, case):
    step, says = FAILURES[case]
    fake.then(step)
    start = time.monotonic()
    gen = ask_stream(MAYOR, index=seeds_index, llm=settings(fake, model="m", timeout=1.0))
    deltas = streamed(gen)
    result = gen.result()
    assert time.monotonic() - start < 5, "a failing server must not hold the reader up"
    assert not result.generated and not result.grounded
    assert result.text == ask(MAYOR, index=seeds_index).text
    (notice,) = result.notices
    assert says in notice and "extracted answer" in notice and "Traceback" not in notice
    if case == "killed mid-answer":
        assert deltas == ["It was", " founded"], "what had streamed was shown; the notice replaces it"


def test_connection_refused_falls_back_at_once(seeds_index):
    start = time.monotonic()
    result = generate_answer(MAYOR, index=seeds_index, llm=LLMSettings(closed_port_url(), "m", timeout=5))
    assert time.monotonic() - start < 3
    assert not result.generated and "cannot reach http://127.0.0.1:" in result.notices[0]


def test_the_client_raises_its_named_error(fake):
    fake.then(Status(503))
    with pytest.raises(LLMUnavailable, match="HTTP 503"):
        list(chat_stream(settings(fake, model="m"), [{"role": "user", "content": "hi"}]))


# --- follow-ups ----------------------------------------------------------------------------------

FOLLOW_UP_HISTORY = [
    {"role": "user", "content": MAYOR},
    {"role": "assistant", "content": "Wang Zilian.\n\nWang Zilian, Mayor of Changchun, presided ... [1]"},
]


def test_a_follow_up_is_rewritten_before_retrieval(fake, seeds_index):
    fake.then(Say(REWRITTEN), Say("The sister-cities conference of Changchun's auto clusters [1]."))
    result = generate_answer(
        "What did he preside over?", history=FOLLOW_UP_HISTORY, index=seeds_index, llm=settings(fake)
    )
    rewrite, answer = fake.requests
    assert not rewrite.get("stream") and rewrite["max_tokens"] <= 64
    assert rewrite["messages"] == rewrite_messages("What did he preside over?", FOLLOW_UP_HISTORY)
    assert result.question == REWRITTEN
    assert result.extracted == ask(REWRITTEN, history=FOLLOW_UP_HISTORY, index=seeds_index)
    assert answer["messages"][1]["content"].endswith(f"Question: {REWRITTEN}")
    assert result.citations[0].source == MAYOR_DOC and result.grounded


def test_a_rewrite_that_is_not_a_question_is_ignored(fake, seeds_index):
    fake.then(Say("It was signed in Changchun."), Say("Changchun [1]."))
    result = generate_answer(
        "And who delivered a speech there?", history=FOLLOW_UP_HISTORY, index=seeds_index, llm=settings(fake)
    )
    assert result.question == "And who delivered a speech there?"
    assert result.extracted == ask(
        "And who delivered a speech there?", history=FOLLOW_UP_HISTORY, index=seeds_index
    )


def test_a_rewrite_naming_something_unknown_does_not_cost_the_answer(fake, seeds_index):
    fake.then(Say("Who delivered a speech at the Zorblat conference?"), Say("Zhang Zhijun [1]."))
    result = generate_answer(
        "And who delivered a speech there?", history=FOLLOW_UP_HISTORY, index=seeds_index, llm=settings(fake)
    )
    assert ask("Who delivered a speech at the Zorblat conference?", index=seeds_index).abstained
    assert result.question == "And who delivered a speech there?" and not result.abstained


def test_a_server_that_fails_the_rewrite_is_not_asked_again(fake, seeds_index):
    fake.then(Status(503), Say("never asked [1]"))
    result = generate_answer(
        "And who delivered a speech there?", history=FOLLOW_UP_HISTORY, index=seeds_index, llm=settings(fake)
    )
    assert len(fake.requests) == 1
    assert not result.generated and "HTTP 503" in result.notices[0]
    assert result.extracted == ask(
        "And who delivered a speech there?", history=FOLLOW_UP_HISTORY, index=seeds_index
    )


def test_a_first_question_is_not_rewritten(fake, seeds_index):
    fake.then(Say("Wang Zilian [1]."))
    generate_answer(
        MAYOR, history=[{"role": "assistant", "content": "Hello"}], index=seeds_index, llm=settings(fake)
    )
    assert len(fake.requests) == 1 and fake.requests[0]["stream"] is True


def test_invalid_questions_raise_before_anything_is_asked(fake, seeds_index):
    with pytest.raises(rag.InvalidQuestion):
        ask_stream("  ", index=seeds_index, llm=settings(fake))
    assert fake.requests == []


def test_a_generation_streams_once(fake, seeds_index):
    fake.then(Say("Wang Zilian [1]."), Say("Wang Zilian [1]."))
    gen = ask_stream(MAYOR, index=seeds_index, llm=settings(fake))
    assert gen.result().grounded, "result() streams what is left"
    with pytest.raises(RuntimeError, match="iterated once"):
        list(gen)
    abandoned = ask_stream(MAYOR, index=seeds_index, llm=settings(fake))
    next(iter(abandoned))
    with pytest.raises(RuntimeError, match="abandoned"):
        abandoned.result()
