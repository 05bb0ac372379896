"""The chat with a language model server: streaming, the extracted answer beside, notices, settings.

The server is the scripted fake of :mod:`fake_llm`; the real one is in test_llm_server.py.
"""

from __future__ import annotations

import json

import pytest
from fake_llm import FakeLLM, Say, Status
from test_ui import MAYOR, MAYOR_DOC, client, final, serve

from rag import LLMSettings, ask
from ui.app import (
    SOURCES_CLASS,
    Library,
    converse,
    create_app,
    llm_note,
    page_llm,
    render_answer,
    render_sources,
    respond,
)
from ui.chat import WRITING

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


def settings(fake: FakeLLM, **kw) -> LLMSettings:
    return LLMSettings(base_url=fake.url, **{"model": "m", "timeout": 5.0, **kw})


def test_the_reply_streams_token_by_token_then_shows_the_extract_and_cards(fake, seeds_index, monkeypatch):
    monkeypatch.setattr("ui.chat.STREAM_INTERVAL", 0)  # an update per token, so the test sees them all
    words = ("The", " mayor", " is", " Wang Zilian", " [", "1", "][7]", ".")
    fake.then(Say("".join(words), pieces=words))
    steps = list(respond(MAYOR, [], index=seeds_index, llm=settings(fake)))
    assert steps[0] == [{"role": "assistant", "content": WRITING}]
    texts = [s[0]["content"] for s in steps[1:-1]]
    assert len(texts) >= 5 and all(len(a) < len(b) for a, b in zip(texts, texts[1:], strict=False))
    assert all(len(s) == 1 for s in steps[:-1]), "the cards come with the finished reply"
    assert not any("[7]" in t for t in texts), "a mark naming no passage is never shown"

    reply, cards = steps[-1]
    content = reply["content"]
    assert content.startswith("The mayor is Wang Zilian [1].")
    assert "Extracted answer: **Wang Zilian** [1]" in content
    assert "1 citation mark naming no passage given was removed" in content
    assert SOURCES_CLASS in cards["content"] and MAYOR_DOC in cards["content"]
    assert "<mark>Wang Zilian</mark>" in cards["content"]


def test_cards_the_generated_reply_cites_are_open(fake, seeds_index):
    fake.then(Say("Signed in Changchun [2] on Wang Zilian [1]."))
    reply, cards = final(respond(MAYOR, [], index=seeds_index, llm=settings(fake)))
    answer = ask(MAYOR, index=seeds_index)
    assert cards["content"] == render_sources(answer, cited={1, 2})
    assert cards["content"].count('<details class="rag-card" open>') == 2


def test_a_failing_server_gives_the_extracted_reply_under_a_notice(fake, seeds_index):
    fake.then(Status(500))
    steps = list(respond(MAYOR, [], index=seeds_index, llm=settings(fake)))
    reply, cards = steps[-1]
    answer = ask(MAYOR, index=seeds_index)
    assert reply["content"].startswith("⚠️ _The language model gave no answer (")
    assert "HTTP 500" in reply["content"]
    assert reply["content"].endswith(render_answer(answer))
    assert cards["content"] == render_sources(answer)


def test_an_ungrounded_reply_says_so(fake, seeds_index):
    fake.then(Say("It was founded on Wang Zilian."))
    reply, _ = final(respond(MAYOR, [], index=seeds_index, llm=settings(fake)))
    assert "cites none of the passages, so it is not grounded" in reply["content"]


def test_an_abstention_does_not_ask_the_model(fake, seeds_index):
    steps = list(respond("What is the capital of Mars?", [], index=seeds_index, llm=settings(fake)))
    assert fake.requests == [] and WRITING not in steps[0][0]["content"]
    assert final(steps) == final(respond("What is the capital of Mars?", [], index=seeds_index, seconds=0))


def test_converse_passes_the_chat_to_the_rewrite(fake, seeds_index):
    fake.then(Say(MAYOR), Say("Wang Zilian [1]."))
    before = [{"role": "user", "content": MAYOR}, {"role": "assistant", "content": "Wang Zilian. [1]"}]
    chats = list(converse("What did he preside over?", before, index=seeds_index, llm=settings(fake)))
    assert chats[-1][:3] == before + [{"role": "user", "content": "What did he preside over?"}]
    rewrite, _ = fake.requests
    assert MAYOR in rewrite["messages"][1]["content"]


def test_page_fields_make_the_settings():
    default = LLMSettings("http://127.0.0.1:8080/v1", "qwen", "sk-env", 30)
    assert page_llm("", "qwen", "", default) is None, "an emptied URL means extractive answers"
    assert page_llm("localhost:8080", "", "", default) is None
    assert page_llm("http://[::1", "", "", default) is None
    assert page_llm(" http://127.0.0.1:8080/v1 ", "", "", default) == LLMSettings(
        "http://127.0.0.1:8080/v1", "", "sk-env", 30
    )
    # the configured key is never sent to a URL typed into the page
    assert page_llm("http://127.0.0.1:9/v1", "x", "", default).api_key is None
    assert page_llm("http://127.0.0.1:9/v1", "x", "sk-page", default).api_key == "sk-page"
    assert page_llm("http://127.0.0.1:9/v1", "x", "", None).timeout == 60.0


def test_the_note_says_what_answers():
    assert "extracted" in llm_note("", "")
    assert llm_note("127.0.0.1:8080", "").startswith("⚠️ Not used")
    assert "not a valid URL" in llm_note("http://[::1", "")
    assert "`qwen`" in llm_note("http://127.0.0.1:8080/v1", "qwen")
    assert "first model" in llm_note("http://127.0.0.1:8080/v1", "")


def test_the_page_is_prefilled_from_the_environment_but_never_shows_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:8081/v1")
    monkeypatch.setenv("RAG_LLM_MODEL", "qwen")
    monkeypatch.setenv("RAG_LLM_API_KEY", "sk-very-secret")
    demo = create_app(Library(source=tmp_path / "docs", index_dir=tmp_path / "index"))
    config = json.dumps(demo.config, default=str)
    assert "http://127.0.0.1:8081/v1" in config and '"qwen"' in config
    assert "sk-very-secret" not in config
    off = json.dumps(
        create_app(Library(source=tmp_path, index_dir=tmp_path / "i"), llm=None).config, default=str
    )
    assert "http://127.0.0.1:8081/v1" not in off


@pytest.mark.slow
def test_the_chat_endpoint_answers_with_the_configured_model(fake, seeds_index_dir, tmp_path):
    import shutil

    from test_ui import SEEDS

    index_dir = tmp_path / "index"
    shutil.copytree(seeds_index_dir, index_dir)
    fake.default = Say("It was founded on Wang Zilian [1].")
    for url in serve(Library(source=SEEDS, index_dir=index_dir), llm=settings(fake)):
        reply, cards = client(url).predict(MAYOR, api_name="/chat")
    assert reply["content"].startswith("It was founded on Wang Zilian [1].")
    assert "Extracted answer: **Wang Zilian** [1]" in reply["content"]
    assert MAYOR_DOC in cards["content"]
    assert fake.requests and fake.requests[-1]["stream"] is True


@pytest.mark.slow
def test_a_page_served_to_other_machines_cannot_choose_the_server(fake, seeds_index_dir, tmp_path):
    import shutil

    from test_ui import SEEDS

    index_dir = tmp_path / "index"
    shutil.copytree(seeds_index_dir, index_dir)
    lib = Library(source=SEEDS, index_dir=index_dir)
    demo = create_app(lib, llm=None, llm_editable=False)
    handlers = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}
    # what a crafted request could send for the page's fields: a URL of its choosing
    *_, (_, chat) = handlers["ask_in_chat"](MAYOR, [], fake.url, "m", "", None)
    assert not fake.requests, "the page's URL was called"
    assert "Wang Zilian" in chat[-2]["content"]  # answered, extractively
    fields = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "rag-llm-url"]
    assert fields and fields[0]["props"]["interactive"] is False
    # served to this machine only, the same request uses the page's server
    editable = create_app(lib, llm=None)
    handlers = {f.fn.__name__: f.fn for f in editable.fns.values() if f.fn is not None}
    fake.default = Say("It was founded on Wang Zilian [1].")
    list(handlers["ask_in_chat"](MAYOR, [], fake.url, "m", "", None))
    assert fake.requests


def test_a_page_served_to_other_machines_does_not_show_the_server(tmp_path):
    configured = LLMSettings(base_url="http://10.9.8.7:8080/v1", model="house-model-7b", api_key="sk-x")
    lib = Library(source=tmp_path / "docs", index_dir=tmp_path / "index")
    public = json.dumps(create_app(lib, llm=configured, llm_editable=False).config, default=str)
    for secret in ("10.9.8.7", "house-model-7b", "sk-x"):
        assert secret not in public
    assert "language model set when the server started" in public
    # this machine's own page shows it, to be changed
    local = json.dumps(create_app(lib, llm=configured).config, default=str)
    assert "http://10.9.8.7:8080/v1" in local and "house-model-7b" in local
