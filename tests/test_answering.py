"""Question reading, answer candidates and the learned ranker: hand-worked cases; the candidate tests
draw on the seeds index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.train_ranker import fit
from rag import ask
from rag import candidates as cand
from rag.answering import evidence
from rag.question import (
    LABELS,
    asked_noun,
    counted_noun,
    counted_words,
    head_noun,
    message_text,
    names,
    question_kind,
    read_question,
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("When was the institute founded?", "date"),
        ("In what year did it open?", "date"),
        ("Who signed the agreement?", "person"),
        ("Which official presided over the meeting?", "person"),
        ("How many projects were signed?", "number"),
        ("How much was the contract worth?", "number"),
        ("Where was the conference held?", "place"),
        ("In which city was the agreement signed?", "place"),
        ("Which company built the car?", "organisation"),
        ("Which anniversary was marked?", "ordinal"),
        ("Why did the delegation visit?", "explain"),
        ("How did the governor respond?", "explain"),
        ("What did the secretary stress?", "phrase"),
        # the head noun of "which/what ..." decides, not the first noun
        ("Which FAW Group director and deputy secretary spoke?", "person"),
        ("Which city's government signed?", "organisation"),
        ("What is the total amount?", "number"),
        ("What kind of centre is it?", "phrase"),
    ],
)
def test_question_kind(question, kind):
    assert question_kind(question) == kind


def test_names_are_capitalised_words_and_numbers_but_not_the_first_word_or_acronyms():
    found = names("When did Hongqi launch the CAS car in 2021 and its 14th plan?")
    assert [word for word, _ in found] == ["Hongqi", "2021", "14th"]
    assert found[0][1] == ("hongqi",)


def test_message_text_reads_strings_and_content_blocks():
    assert message_text("plain") == "plain"
    assert message_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "a\nb"
    assert message_text(None) == ""


def test_ranker_file_matches_the_features():
    model = json.loads(cand.RANKER_PATH.read_text(encoding="utf-8"))
    assert model["features"] == list(cand.FEATURES)
    assert len(model["weights"]) == len(cand.FEATURES)
    assert 0.0 <= model["abstain_below"] < 1.0


def test_rank_orders_by_the_learned_score(monkeypatch):
    weights = np.zeros(len(cand.FEATURES), dtype=np.float32)
    weights[cand.FEATURES.index("label_fit")] = 2.0
    monkeypatch.setattr(cand, "ranker_weights", lambda: weights)

    def make(fit_value):
        f = np.zeros(len(cand.FEATURES), dtype=np.float32)
        f[cand.FEATURES.index("label_fit")] = fit_value
        return cand.Candidate(sentence=None, start=0, end=1, label="X", features=f, text=str(fit_value))

    ranked = cand.rank([make(0.0), make(1.0), make(0.5)])
    assert [c.text for c in ranked] == ["1.0", "0.5", "0.0"]
    assert ranked[0].score == pytest.approx(1 / (1 + np.exp(-2.0)))  # sigmoid(2 * 1.0), by hand


def test_fit_separates_a_separable_set():
    rng = np.random.default_rng(0)
    x = np.hstack([rng.normal(size=(400, 2)), np.ones((400, 1))])
    y = (x[:, 0] - x[:, 1] > 0).astype(float)
    w = fit(x, y, l2=0.1)
    assert w[0] > 0 > w[1]
    assert ((x @ w > 0) == y.astype(bool)).mean() > 0.97


def test_typed_question_gets_only_spans_of_its_type(seeds_index):
    q, _, _, spans = evidence(
        "When was the Northeast Asian Automotive Research Institute founded?",
        history=None,
        k=5,
        index=seeds_index,
    )
    assert q.kind == "date"
    ranked = cand.rank(spans)
    assert {c.label for c in ranked} <= set(LABELS["date"])
    assert ranked[0].text == "March 31, 2021"
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:], strict=False))


def test_spans_the_question_names_are_not_candidates(seeds_index):
    _, _, _, ranked = evidence(
        "Which organisation signed an agreement with the People’s Government of Jilin Province?",
        history=None,
        k=5,
        index=seeds_index,
    )
    assert ranked
    assert all("Government of Jilin Province" not in c.text for c in ranked)


@pytest.mark.parametrize(
    ("question", "head"),
    [
        ("Which district did the delegation come from?", "district"),
        ("What kind of automotive development was promised?", "develop"),
        ("Liu Dianxun is Director of which ministry?", "ministri"),
        ("What is the capital of France?", "capit"),
        ("Which government body signed the framework agreement?", "bodi"),  # the verb ends the phrase
        ("Which city hosted the fair?", "citi"),
        ("Who signed it?", None),
    ],
)
def test_head_noun_is_what_a_which_question_asks_for(question, head):
    assert head_noun(question) == head


@pytest.mark.parametrize(
    ("question", "noun"),
    [
        ("What was the theme of the 2023 conference?", "theme"),
        ("Where is the headquarters of the company located?", "headquarters"),
        ("Who is the general manager of the Hongqi brand?", "manager"),
        ("Who is the CEO of the company?", "CEO"),
        ("What is the education system currently?", None),  # no relation to something named
        ("What is Changchun famous for?", None),  # without "the" the words may be anything
        ("What is the date of the meeting?", None),  # says what form the answer takes
        ("What is the name of the river?", None),
        ("Which city hosted it?", None),
        ("Who chaired the conference?", None),
    ],
)
def test_asked_noun_is_the_noun_of_a_definite_question(question, noun):
    assert asked_noun(question) == noun


@pytest.mark.parametrize(
    ("question", "noun"),
    [
        ("How many people attended the 2003 IPCC meeting?", "people"),  # not the meeting
        ("Roughly how many delegates from abroad took part?", "delegates"),
        ("How many US presidents are alumni of the school?", "presidents"),
        ("How many times had he torn his ACL?", None),  # any count of events answers it
        ("How many did they sell?", None),
        ("Who signed it?", None),
    ],
)
def test_counted_noun_is_the_head_of_the_phrase_around_many(question, noun):
    assert counted_noun(question) == noun


def test_abstains_when_the_documents_never_use_the_noun_asked_about(seeds_index):
    answer = ask("What was the theme of the 2023 China Automotive Innovation Conference?", index=seeds_index)
    assert answer.abstained and "never mention theme" in answer.text
    # the same shape of question about a noun the documents use is answered
    answer = ask("Who was the governor of Jilin Province when FAW released its outline?", index=seeds_index)
    assert "never mention" not in answer.text


def _labels(text: str, ents, phrases=()):
    return [(text[s:e], label) for s, e, label in cand._retype(text, ents, phrases)]


def _at(text: str, part: str, label: str):
    start = text.index(part)
    return (start, start + len(part), label)


def test_retype_extends_a_cut_name_to_its_noun_phrase_and_reads_the_role_after_it():
    text = "Jing Junhai, Secretary of the Committee, and Han Jun, Deputy Secretary, attended."
    ents = [_at(text, "Jing Junhai", "PERSON"), _at(text, "Han", "NORP")]
    phrases = [_at(text, "Jing Junhai", "")[:2], _at(text, "Han Jun", "")[:2]]
    assert _labels(text, ents, phrases) == [("Jing Junhai", "PERSON"), ("Han Jun", "PERSON")]


def test_retype_keeps_a_role_out_of_the_name_and_reads_a_role_before_it():
    text = "Vice Governor Li Guoqiang presided."
    ents = [_at(text, "Li Guoqiang", "GPE")]
    phrases = [_at(text, "Vice Governor Li Guoqiang", "")[:2]]
    assert _labels(text, ents, phrases) == [("Li Guoqiang", "PERSON")]


def test_retype_does_not_make_a_person_of_a_word_inside_a_title():
    text = "Wang, Director and Deputy Party Secretary of FAW Group, spoke."
    assert _labels(text, [_at(text, "Party", "ORG")]) == [("Party", "ORG")]


def test_retype_gives_a_list_of_names_its_most_common_label():
    text = "Cities including Changchun, Jilin, Siping, Liaoyuan and Baicheng presented."
    ents = [
        _at(text, "Changchun", "GPE"),
        _at(text, "Jilin", "GPE"),
        _at(text, "Siping", "GPE"),
        _at(text, "Liaoyuan", "PERSON"),
        _at(text, "Baicheng", "NORP"),
    ]
    assert {label for _, label in _labels(text, ents)} == {"GPE"}
    # no majority: labels stay as found
    two = "Changchun, Jilin and Baicheng presented."
    mixed = [_at(two, "Changchun", "GPE"), _at(two, "Jilin", "ORG"), _at(two, "Baicheng", "PERSON")]
    assert [label for _, label in _labels(two, mixed)] == ["GPE", "ORG", "PERSON"]


def test_possessive_spans_are_marked():
    assert cand._possessive("Xi Jinping’s", " I")
    assert cand._possessive("Xi Jinping", "'s")
    assert not cand._possessive("The People’s Government", " o")


def test_retype_does_not_make_a_person_of_a_body_with_a_role_after_it():
    text = "An Tiecheng, Secretary of Party Committee, President of the Center, spoke."
    assert _labels(text, [_at(text, "Party Committee", "ORG")]) == [("Party Committee", "ORG")]


def test_heads_of_a_name_are_its_last_word_or_the_word_before_of():
    assert cand._heads("Jiaojiang District") == {"district"}
    assert cand._heads("the Ministry of Commerce") == {"ministri", "commerc"}
    assert cand._head_words("the Ministry of Commerce")[0] == "Ministry"  # the likelier head first
    assert "district" not in cand._heads("the District Party Committee")


def test_words_of_the_name_before_are_not_credited_to_the_next_name(seeds_index):
    # "Zhang Enhui, Member ... and Secretary of the Changchun Municipal Party Committee, An Tiecheng, ..."
    _, _, _, spans = evidence(
        "Who was Secretary of the Changchun Municipal Party Committee?", history=None, k=5, index=seeds_index
    )
    listed = {
        c.text: c for c in spans if "Zhang Enhui, Member" in cand.sentence_text(c.sentence, seeds_index)
    }
    before, pairs = cand.FEATURES.index("near_before"), cand.FEATURES.index("near_pairs")
    zhang, an = listed["Zhang Enhui"], listed["An Tiecheng"]
    assert an.features[before] == 0.0
    assert zhang.features[pairs] > an.features[pairs] > 0.0


def test_retype_reads_a_name_by_its_head_noun():
    text = "The Institute and Jiaojiang District signed with the Changchun Institute of Applied Chemistry."
    ents = [_at(text, "Jiaojiang District", "PERSON"), _at(text, "Changchun Institute", "GPE")]
    assert _labels(text, ents) == [("Jiaojiang District", "GPE"), ("Changchun Institute", "ORG")]


def test_retype_leaves_names_joined_by_commas_alone():
    # an apposition chain, not a list: no "and" before its last name
    text = "The Institute of Chemistry, Chinese Academy of Sciences, Lu Lehui, deputy director, spoke."
    ents = [
        _at(text, "The Institute of Chemistry", "ORG"),
        _at(text, "Chinese Academy of Sciences", "ORG"),
        _at(text, "Lu Lehui", "PERSON"),
    ]
    assert _labels(text, ents)[-1] == ("Lu Lehui", "PERSON")


def test_retype_reads_the_noun_before_of_first():
    # the last word names a place, but the name is a body: "the Government of ..."
    text = "The People’s Government of Jilin Province signed an agreement."
    ents = [_at(text, "The People’s Government of Jilin Province", "GPE")]
    assert _labels(text, ents) == [("The People’s Government of Jilin Province", "ORG")]


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("How many vehicles did FAW Group sell in 2021?", ("vehicl",)),
        ("How many key cooperation projects were signed?", ("key", "cooper", "project")),
        ("Roughly how many delegates from abroad took part?", ("deleg",)),
        ("How many did they sell?", ()),
        ("When was it founded?", ()),
    ],
)
def test_counted_words_are_what_a_how_many_question_counts(question, words):
    assert counted_words(question) == words


def _features_of(spans, text):
    found = [c for c in spans if c.text == text]
    assert found, f"{text!r} is not a candidate: {[c.text for c in spans]}"
    return dict(zip(cand.FEATURES, found[0].features.tolist(), strict=True))


def test_a_number_of_what_is_counted_is_told_from_a_number_of_something_else(seeds_index):
    _, _, _, spans = evidence(
        "How many key cooperation projects were signed at the sister-cities conference?",
        history=None,
        k=5,
        index=seeds_index,
    )
    eighteen = _features_of(spans, "18")  # "18 key cooperation projects"
    assert eighteen["counts_asked"] == 1.0
    # "the ‘three goals at trillion level’" counts goals: no answer to how many vehicles
    _, _, _, spans = evidence("How many goals will the city build?", history=None, k=5, index=seeds_index)
    assert _features_of(spans, "three")["counts_asked"] == 1.0
    _, _, _, spans = evidence("How many vehicles will the city build?", history=None, k=5, index=seeds_index)
    assert "three" not in [c.text for c in spans]


def test_a_number_counts_what_is_asked_when_the_words_after_it_mean_the_same(seeds_index):
    question = "Roughly how many delegates from domestic and foreign component suppliers took part?"
    _, _, _, spans = evidence(question, history=None, k=5, index=seeds_index)
    # "more than 400 representatives of auto parts suppliers": representatives, not delegates, by name
    assert _features_of(spans, "more than 400")["counts_asked"] == 1.0


def test_a_length_of_time_is_marked_for_how_long_questions_only(seeds_index):
    question = "For how long has FAW been developing?"
    _, _, sentences, _ = evidence(question, history=None, k=5, index=seeds_index)
    q = read_question(question, None, seeds_index)
    spans = cand.candidates(q, sentences, seeds_index, top=len(sentences))
    assert _features_of(spans, "more than 60 years")["duration"] == 1.0
    assert _features_of(spans, "more than 60 years")["not_duration"] == 0.0
    assert _features_of(spans, "July this year")["not_duration"] == 1.0
    q = read_question("When has FAW been developing?", None, seeds_index)
    spans = cand.candidates(q, sentences, seeds_index, top=len(sentences))
    assert _features_of(spans, "more than 60 years")["duration"] == 0.0
    assert _features_of(spans, "July this year")["not_duration"] == 0.0


def test_a_list_item_keeps_the_participle_spacy_left_out():
    text = "We focus on complete vehicles, supporting facilities and services, and more."
    phrases = [_at(text, p, "")[:2] for p in ("complete vehicles", "facilities", "services")]
    found = [text[s:e] for s, e in cand._coordinations(0, phrases, text)]
    assert found == ["complete vehicles, supporting facilities and services"]
    # "including" opens a phrase of its own: no list across it
    text = "Three cities, including Changchun and Jilin, presented."
    phrases = [_at(text, p, "")[:2] for p in ("Three cities", "Changchun", "Jilin")]
    assert [text[s:e] for s, e in cand._coordinations(0, phrases, text)] == ["Changchun and Jilin"]


def test_more_sentences_are_read_only_when_the_best_candidate_is_unlikely(seeds_index, monkeypatch):
    from rag import answering

    question = "When was the Northeast Asian Automotive Research Institute founded?"
    q, _, sentences, spans = evidence(question, history=None, k=5, index=seeds_index)
    reads = []

    def recording(*args, top=cand.READ_TOP):
        reads.append(top)
        return cand.candidates(*args, top=top)

    monkeypatch.setattr(answering, "candidates", recording)
    sure = answering.choose(q, sentences, spans, seeds_index, 0.0)
    assert reads == [] and sure.text == "March 31, 2021"
    wider = answering.choose(q, sentences, spans, seeds_index, 1.01)
    assert reads == [answering.WIDER_READ]
    assert wider.score >= sure.score  # the wider reading still holds the first one's candidates


def test_abstention_cut_counts_answers_the_wider_reading_recovers():
    from eval.train_ranker import threshold

    # (probability, useful) of the first reading, then of the wider one
    good = [(0.9, True, 0.9, True)] * 98
    recovered = [(0.01, False, 0.5, True)] * 2  # below any cut at first; the wider reading finds them
    unanswerable = [(0.3, False, 0.3, False)] * 10
    cut = threshold(good + recovered, unanswerable)
    assert cut["abstain_below"] == 0.5
    assert cut["useful_replies_lost"] == 0.0
    assert cut["unanswerable_abstained"] == 1.0


def test_a_kind_of_question_prefers_a_modified_phrase_of_its_head_noun(seeds_index):
    q = read_question("What kind of automotive development did they promise?", None, seeds_index)
    assert q.kind_words == ("automot", "develop") and q.head == "develop"
    green = ["green", "low", "carbon", "automot", "develop"]
    assert cand._kind_of("green and low-carbon automotive development", green, q) == 1.0
    assert cand._kind_of("the high-quality development", ["high", "qualiti", "develop"], q) == 0.5
    # the head noun as the last item of a list, or with nothing the question lacks, is not a kind of it
    assert cand._kind_of("the transformation and development", ["transform", "develop"], q) == 0.0
    assert cand._kind_of("automotive development", ["automot", "develop"], q) == 0.0
    assert read_question("Which automotive development did they promise?", None, seeds_index).kind_words == ()


@pytest.mark.parametrize(
    ("noun", "span", "other"),
    [
        ("city", "Jilin Province", True),  # a province is no city
        ("city", "Changchun", False),  # a name without a head noun may be anything
        ("city", "Changchun City", False),
        ("city", "the Province of Ontario", True),  # the head before "of"
        ("country", "New York State", False),  # a state and a country may be one
        ("region", "Jilin Province", False),  # a region is any level
        ("city", "the District Party Committee", False),  # a body, not a place
    ],
)
def test_a_name_headed_by_a_place_of_another_level_is_told(seeds_index, noun, span, other):
    q = read_question(f"Which {noun} is it?", None, seeds_index)
    assert cand._another_place(span, q) is other


def test_which_city_is_not_answered_by_a_province(seeds_index):
    answer = ask(
        "In which city did the 2023 China Automotive Innovation Conference kick off?", index=seeds_index
    )
    assert answer.short_answer == "Changchun"


def test_the_part_after_of_of_a_name_the_question_mostly_uses_is_a_candidate(seeds_index):
    # spaCy reads "Investment Promotion of the Ministry of Commerce" as one name
    question = "Liu Dianxun is Director of Investment Promotion of which ministry?"
    _, _, _, spans = evidence(question, history=None, k=5, index=seeds_index)
    texts = [c.text for c in spans]
    assert "the Ministry of Commerce" in texts
    assert "Investment Promotion of the Ministry of Commerce" not in texts
    assert ask(question, index=seeds_index).short_answer == "the Ministry of Commerce"
