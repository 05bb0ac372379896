"""Answer candidates: the sentences of the retrieved passages, the spans in them that could answer, and
the features a small learned ranker (logistic regression, ``ranker.json``) scores them by.

Candidates are spaCy's entities (found when a question first reads the sentence), pattern matches NER
misses ("RMB21 billion", quoted names) and noun phrases. The features are general - how well the
sentence matches the question, whether the span is of the kind the question wants, how close the
question's words sit to it - so the weights, fitted on SQuAD (``python -m eval.train_ranker``), carry
over to any corpus.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .chunking import Chunk
from .embedding import similarity
from .nlp import STOPWORDS, annotate, term_spans, terms
from .question import LABELS, ORG_NOUNS, PERSON_NOUNS, PLACE_NOUNS, Question
from .retrieval import Hit, Index

RANKER_PATH = Path(__file__).with_name("ranker.json")

# Patterns for answers NER misses or splits ("RMB21 billion", "2021-04-06", "30%").
_PATTERNS: list[tuple[re.Pattern, str]] = [
    (
        re.compile(
            r"(?:RMB|USD|US\$|HK\$|\$|€|£|¥|yuan\s)\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:billion|million|thousand|"
            r"trillion|bn|m))?(?:\s(?:yuan|dollars|euros))?",
            re.I,
        ),
        "MONEY",
    ),
    (re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:%|per\s?cent)", re.I), "PERCENT"),
    (re.compile(r"(?<![\w-])(?:19|20)\d{2}-\d{1,2}-\d{1,2}(?![\w-])"), "DATE"),
    # a name in quotes ("the “Bestune” brand") is often one NER does not know
    (re.compile(r"(?<=[“\"])[^”\"\n]{2,40}(?=[”\"])"), "QUOTED"),
    (
        re.compile(
            r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?:\s(?:billion|million|thousand|hundred|trillion))?(?![\w%])"
        ),
        "CARDINAL",
    ),
]

# A date with a year or a month name ("March 31, 2021") answers "when" better than "this year".
_CONCRETE_DATE = re.compile(
    r"\b(?:1[5-9]|20)\d{2}s?\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\b", re.I
)

READ_TOP = 5  # sentences per question whose entities and noun phrases become candidates
# a length of time: a count and a unit ("more than 60 years", "three decades"), not "this year"
_DURATION = re.compile(
    r"\b(?:\d[\d,.]*|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
    r"thirty|forty|fifty|sixty|hundreds?|thousands?|dozens?|several|few|many|half)\s+(?:[\w-]+\s+)?"
    r"(?:years?|months?|weeks?|days?|hours?|minutes?|seconds?|decades?|centur(?:y|ies))\b",
    re.I,
)
# a full stop is left out: within a sentence it ends an abbreviation ("eight U.S. presidents")
_CLAUSE_END = re.compile(r"[,;:()\[\]“”\"]")
COUNTED_WORDS = 4  # words after a number that say what it counts
# cosine of two words' MiniLM vectors from which they name the same kind of thing ("delegates" and
# "representatives" 0.52, "students" and "pupils" 0.63; "vehicles" and "goals" 0.29, "years" 0.28)
SAME_THING = 0.4
MAX_NAMED = 0.5  # a span more than half made of the question's own words is not its answer
CONTEXT_CREDIT = 0.3  # share of a question word's weight earned when only the sentence's passage has it
NEAR_WORDS = 8.0  # distance, in words, at which a question word near a candidate counts half
# sentence score = dense + LEX * word share + CHUNK * passage cosine: ranks sentences, orders the evidence
W_SENT_LEX, W_CHUNK = 0.6, 0.3

FEATURES = (
    "sent_dense",  # cosine of the question and the sentence
    "sent_lex",  # idf-weighted share of the question's words in the sentence (title words count)
    "chunk_dense",  # cosine of the question and the passage
    "chunk_fused",  # the passage's fused retrieval score
    "sent_rank",  # 1 / (1 + rank of the sentence by its score)
    "label_fit",  # how well the span's label fits the wanted kind (LABELS), 0 for a noun phrase
    "label_primary",  # the span has the kind's main label
    "is_phrase",  # a noun phrase rather than an entity
    "phrase_q_phrase",  # a noun phrase for a question that wants no particular kind
    "entity_q_phrase",  # an entity for such a question
    "near_after",  # question words after the span, up to the next candidate, decayed by distance
    "near_before",  # question words before it, likewise
    "apposition",  # question words in an apposition after it, up to the next candidate of its label
    "closest",  # 1 / (1 + words to the nearest question word)
    "length",  # log(1 + words in the span)
    "named_share",  # share of the span's words the question already uses
    "vague_date",  # a DATE with neither year nor month ("this year")
    "names_missing",  # share of the question's names its document lacks
    "near_pairs",  # share of the question's word pairs (adjacent content words) found near the span
    "has_head",  # a name holding the noun a "which <noun>" question asks for ("Jiaojiang District")
    "kind_of_head",  # "what kind of <words>": a noun phrase headed by their noun with a modifier the
    # question lacks, by the share of <words> it holds ("green and low-carbon automotive development")
    "possessive",  # the span is followed by 's ("Xi Jinping's visit"): it modifies, rarely answers
    "counts_asked",  # "how many X": the span is a number of X ("18 key projects")
    "duration",  # "how long": the span is a length of time ("more than 60 years")
    "not_duration",  # "how long": the span is not one ("October 18")
    "bias",
)


@dataclass
class Sentence:
    hit: Hit
    start: int  # absolute offsets in the document
    end: int
    dense: float
    lex: float
    score: float
    spans: tuple[tuple[int, int, str], ...]  # candidate spans: entities, pattern matches, noun phrases
    term_positions: list[tuple[int, int, str]]  # the sentence's content words with their spans


@dataclass
class Candidate:
    sentence: Sentence
    start: int
    end: int
    label: str
    features: np.ndarray
    text: str
    score: float = 0.0
    verified: bool = False  # a person the text gives the role the question asks about (rag.roles)


def score_sentences(q: Question, qvec: np.ndarray, hits: list[Hit], index: Index) -> list[Sentence]:
    rows, owners = [], []
    for hit in hits:
        chunk = index.chunks[hit.chunk]
        for sent, row in zip(chunk.sentences, index.stored.sentence_rows(hit.chunk), strict=True):
            rows.append(row)
            owners.append((hit, chunk, sent))
    if not rows:
        return []
    dense = np.asarray(index.stored.sentence_vectors[rows], dtype=np.float32) @ qvec
    total = sum(q.weights.values()) or 1.0
    out = []
    for (hit, chunk, sent), d in zip(owners, dense.tolist(), strict=True):
        local = chunk.text[sent.start - chunk.start : sent.end - chunk.start]
        positions = [(sent.start + s, sent.start + e, t) for s, e, t in term_spans(local)]
        present = {t for _, _, t in positions}
        # a sentence need not repeat its topic: words of the document's title count in full for each
        # of its sentences, words found elsewhere in the passage count in part
        title, context = index.title_terms[chunk.doc_id], index.chunk_terms[hit.chunk]
        credit = 0.0
        for t, w in q.weights.items():
            if t in present or t in title:
                credit += w
            elif t in context:
                credit += CONTEXT_CREDIT * w
        lex = credit / total
        score = d + W_SENT_LEX * lex + W_CHUNK * hit.dense
        out.append(Sentence(hit, sent.start, sent.end, d, lex, score, (), positions))
    return out


def read_closely(sentences: list[Sentence], index: Index, *, top: int = READ_TOP) -> list[int]:
    """Find the candidate spans of the ``top`` best sentences (spaCy runs here, at question time, on a
    few sentences rather than on the whole corpus at build time); returns their positions, best first."""
    order = sorted(range(len(sentences)), key=lambda i: -sentences[i].score)
    chosen, keys = [], {}
    for i in order:
        key = (index.chunks[sentences[i].hit.chunk].doc_id, sentences[i].start, sentences[i].end)
        if key not in keys.values():  # the same sentence in two overlapping passages is read once
            keys[i] = key
            chosen.append(i)
        if len(chosen) == top:
            break
    cache = index.annotations
    missing = [i for i in chosen if keys[i] not in cache]
    if missing:
        texts = [sentence_text(sentences[i], index) for i in missing]
        for i, found in zip(missing, annotate(texts), strict=True):
            cache[keys[i]] = found
    for i in chosen:
        sent = sentences[i]
        ents, phrases = cache[keys[i]]
        sent.spans = _spans(sent, sentence_text(sent, index), ents, phrases)
    return chosen


def sentence_text(sent: Sentence, index: Index) -> str:
    """The text of a scored sentence, read from its passage."""
    chunk = index.chunks[sent.hit.chunk]
    return chunk.text[sent.start - chunk.start : sent.end - chunk.start]


def _spans(sent: Sentence, local: str, ents, phrases) -> tuple[tuple[int, int, str], ...]:
    """Entities, then pattern matches and noun phrases (single or coordinated) that overlap no entity."""
    found = [(sent.start + s, sent.start + e, label) for s, e, label in _retype(local, ents, phrases)]
    phrases = sorted((sent.start + s, sent.start + e) for s, e in phrases)
    for pattern, label in _PATTERNS:
        for m in pattern.finditer(local):
            s, e = sent.start + m.start(), sent.start + m.end()
            if not any(a < e and s < b for a, b, _ in found):
                found.append((s, e, label))
    named = list(found)
    for s, e in [*phrases, *_coordinations(sent.start, phrases, local)]:
        if not any(a < e and s < b for a, b, _ in named):
            found.append((s, e, "NP"))
    return tuple(sorted(found))


# labels a small NER model confuses on names it has not seen ("Han" NORP, "Baicheng" PERSON)
_NAME_LABELS = frozenset("PERSON NORP GPE LOC ORG FAC".split())
_NAME = re.compile(r"[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*){0,3}")
_TITLE_AFTER = re.compile(r",\s+(?:the\s+)?([\w-]+)\b")  # the first word after the name's comma
_TITLE_BEFORE = re.compile(r"\b([\w-]+)\s+$")


def _retype(local: str, ents, phrases) -> list[tuple[int, int, str]]:
    """Correct the entities of names a small NER model misreads, from their surroundings:

    - a name cut short is extended to the capitalised noun phrase around it ("Han" -> "Han Jun");
    - a name with a role beside it is a person ("Han Jun, Deputy Secretary of ...", "Governor Li Qiang");
    - names listed together ("A, B, C and D") are of one kind: the most common label in the list
      ("Changchun, Jilin, Siping, Liaoyuan and Baicheng" are all places when most of them are), unless
      a name's own head noun or role said otherwise.
    """
    found: dict[tuple[int, int, str], bool] = {}  # entity -> its label is read from its own words
    for s, e, label in ents:
        sure = False
        if label in _NAME_LABELS:
            for a, b in phrases:
                added = f"{local[a:s]} {local[e:b]}".lower().split()
                if (
                    a <= s
                    and e <= b
                    and (a, b) != (s, e)
                    and _NAME.fullmatch(local[a:b])
                    and not any(w in PERSON_NOUNS or w == "vice" for w in added)
                ):
                    s, e = a, b
                    break
            # a name's head noun says what it names: "Jiaojiang District" is a place, "the People's
            # Government of Jilin Province" a body
            head = next(
                (w for w in map(str.lower, _head_words(local[s:e])) if w in PLACE_NOUNS or w in ORG_NOUNS),
                None,
            )
            sure = True
            if head in PLACE_NOUNS:
                label = "GPE"
            elif head in ORG_NOUNS:
                label = "ORG"
            elif _NAME.fullmatch(local[s:e]) and _has_role(local, s, e):
                label = "PERSON"
            else:
                sure = False
        # an extension can produce one name twice ("Han Jun" from both "Han" and "Jun")
        found[(s, e, label)] = found.get((s, e, label), False) or sure
    out = sorted(found)
    return _list_labels(local, out, {i for i, ent in enumerate(out) if found[ent]})


def _has_role(local: str, s: int, e: int) -> bool:
    if any(word in PLACE_NOUNS or word in ORG_NOUNS for word in local[s:e].lower().split()):
        return False
    after = _TITLE_AFTER.match(local, e)
    if after and after.group(1).lower() in PERSON_NOUNS:
        return True
    before = _TITLE_BEFORE.search(local, 0, s)
    if not (before and before.group(1)[0].isupper() and before.group(1).lower() in PERSON_NOUNS):
        return False
    following = local[e:].split(maxsplit=1)
    return not (following and following[0].lower() in PERSON_NOUNS)  # "Deputy Party Secretary"


def _list_labels(local: str, ents: list[tuple[int, int, str]], sure: set[int]) -> list[tuple[int, int, str]]:
    runs: list[list[int]] = []
    for i, (s, _, label) in enumerate(ents):
        if label not in _NAME_LABELS:
            continue
        if runs and _COORDINATOR.fullmatch(local[ents[runs[-1][-1]][1] : s]):
            runs[-1].append(i)
        else:
            runs.append([i])
    out = list(ents)
    for run in runs:
        # a list ends in "and"/"or"; names only separated by commas are often appositions
        # ("the Institute, Chinese Academy of Sciences, Lu Lehui, deputy director")
        if len(run) < 3 or not _LAST_JOIN.fullmatch(local[ents[run[-2]][1] : ents[run[-1]][0]]):
            continue
        counts: dict[str, int] = {}
        for i in run:
            counts[ents[i][2]] = counts.get(ents[i][2], 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        if len(ranked) > 1 and ranked[0][1] > ranked[1][1]:
            for i in run:
                if i not in sure:
                    out[i] = (ents[i][0], ents[i][1], ranked[0][0])
    return out


_COORDINATOR = re.compile(r"\s*(?:,|,?\s+(?:and|or))\s*")
# spaCy leaves a participle out of the noun phrase it modifies ("supporting facilities"); not a
# preposition-like one, which starts a phrase of its own ("including ...")
_ITEM_GAP = re.compile(
    r"\s*(?:,|,?\s+(?:and|or))\s*(?:(?!(?:includ|accord|regard|concern|follow|exclud))[a-z]+(?:ing|ed)\s+)?"
)
_LAST_JOIN = re.compile(r",?\s+(?:and|or)\s+")


def _coordinations(base: int, phrases: list[tuple[int, int]], local: str) -> list[tuple[int, int]]:
    """Noun phrases joined by commas and "and"/"or" ("resources and environment, advanced materials, and
    new energy"): a list is often the answer, and spaCy gives its items one by one."""
    out = []
    run: list[tuple[int, int]] = []
    for s, e in [*phrases, (None, None)]:
        if s is not None and run and _ITEM_GAP.fullmatch(local[run[-1][1] - base : s - base]):
            run.append((s, e))
            continue
        if len(run) > 1:
            out.append((run[0][0], run[-1][1]))
        run = [(s, e)] if s is not None else []
    return out


def candidates(
    q: Question, sentences: list[Sentence], index: Index, *, top: int = READ_TOP
) -> list[Candidate]:
    """Every span of the ``top`` sentences that could answer ``q``, with its features."""
    labels = LABELS[q.kind]
    wants_phrase = not labels
    name_weights = {t: index.idf.get(t, index.default_idf) for _, stems in q.names for t in stems}
    order = sorted(range(len(sentences)), key=lambda i: -sentences[i].score)
    rank_of = {i: r for r, i in enumerate(order)}
    pairs = _pairs(terms(q.text))
    # a name the question writes as one word may be spelled as two ("Hongqi", "Hong Qi")
    respelled = {w for w in map(_letters, q.text.split()) if len(w) > 3}
    out: list[Candidate] = []
    for i in read_closely(sentences, index, top=top):
        sent = sentences[i]
        chunk = index.chunks[sent.hit.chunk]
        title = index.title_terms[chunk.doc_id]
        # the question's words beyond its document's title say what is asked about the topic
        focus = sum(w for t, w in q.weights.items() if t not in title) or 1.0
        missing = _missing_share(name_weights, index.doc_terms[chunk.doc_id])
        spans = sorted([*sent.spans, *_unnamed_tails(sent.spans, chunk, q)])
        span_words = [terms(chunk.text[s - chunk.start : e - chunk.start]) for s, e, _ in spans]
        shares = [sum(w in q.named for w in words) / len(words) if words else 1.0 for words in span_words]
        # a span the question names is no rival: the words beside it may describe the next span
        rivals = [span for span, share in zip(spans, shares, strict=True) if share <= MAX_NAMED]
        for n, (s, e, label) in enumerate(spans):
            text = chunk.text[s - chunk.start : e - chunk.start]
            words, named = span_words[n], shares[n]
            if named > MAX_NAMED or (len(text.split()) > 1 and _letters(text) in respelled):
                continue  # the question already names (most of) it: it is the topic, not the answer
            fit = labels.get(label, 0.0)
            if labels and not fit:
                continue  # a "when" is answered by a date, a "who" by a name: other spans are not candidates
            if _another_place(text, q):
                continue  # "which city ...?" is not answered by "Jilin Province"
            counts_asked = False
            if q.counted:
                counts_asked, counts_other = _counts(
                    q, words, chunk.text[e - chunk.start : sent.end - chunk.start]
                )
                if counts_other:
                    continue  # "how many vehicles ...?" is not answered by "three goals"
            # question words between this span and its neighbours of the same label say what it is
            # ("Name, title of body, Name2, title2")
            lo = max((b for a, b, other in rivals if b <= s and other == label), default=sent.start)
            if lo > sent.start:
                # "A, title of A, B": the words before the last comma are A's, not B's
                comma = chunk.text[lo - chunk.start : s - chunk.start].rfind(",")
                lo = lo + comma + 1 if comma >= 0 else lo
            hi = min((a for a, b, other in rivals if a >= e and other == label), default=sent.end)
            after = before = apposed = 0.0
            closest = math.inf
            # "Name, title of body, ...": words in an apposition right after the span describe it
            apposition = chunk.text[e - chunk.start : e - chunk.start + 2].startswith(",")
            for a, b, t in sent.term_positions:
                w = q.weights.get(t)
                if not w or (s <= a and b <= e):
                    continue
                gap = _gap(s, e, a, b, chunk.text, chunk.start)
                closest = min(closest, gap)
                if e <= a < hi:
                    after += w / (1.0 + gap / NEAR_WORDS)
                    if apposition:
                        apposed += w
                elif lo <= a and b <= s:
                    before += w / (1.0 + gap / NEAR_WORDS)
            # word pairs keep adjacency: "Secretary of the Changchun Municipal Committee" matches
            # the question's role far better than "Secretary of the Committee", which shares its words
            region = _pairs(
                [t for a, b, t in sent.term_positions if lo <= a and b <= hi and not (s <= a and b <= e)]
            )
            is_phrase = label == "NP"
            length_of_time = q.duration and bool(_DURATION.search(text))
            features = np.array(
                [
                    sent.dense,
                    sent.lex,
                    sent.hit.dense,
                    sent.hit.score,
                    1.0 / (1.0 + rank_of[i]),
                    fit,
                    float(fit == 1.0),
                    float(is_phrase),
                    float(is_phrase and wants_phrase),
                    float(not is_phrase and wants_phrase),
                    min(after / focus, 1.0),
                    min(before / focus, 1.0),
                    min(apposed / focus, 1.0),
                    0.0 if closest == math.inf else 1.0 / (1.0 + closest),
                    math.log1p(len(text.split())),
                    named,
                    float(label == "DATE" and not _CONCRETE_DATE.search(text)),
                    missing,
                    len(pairs & region) / len(pairs) if pairs else 0.0,
                    float(not is_phrase and q.head is not None and q.head in _heads(text)),
                    _kind_of(text, words, q) if is_phrase else 0.0,
                    float(_possessive(text, chunk.text[e - chunk.start : e - chunk.start + 2])),
                    float(counts_asked),
                    float(q.duration and length_of_time),
                    float(q.duration and not length_of_time),
                    1.0,
                ],
                dtype=np.float32,
            )
            out.append(Candidate(sent, s, e, label, features, text))
    return out


def _unnamed_tails(
    spans: tuple[tuple[int, int, str], ...], chunk: Chunk, q: Question
) -> list[tuple[int, int, str]]:
    """The part after "of" of a name whose words before it the question all uses: "Liu Dianxun is
    Director of Investment Promotion of which ministry?" meets "Investment Promotion of the Ministry of
    Commerce", which it mostly names, and is answered by "the Ministry of Commerce"."""
    out = []
    for s, e, label in spans:
        if label == "NP":
            continue
        text = chunk.text[s - chunk.start : e - chunk.start]
        words = terms(text)
        if not words or sum(w in q.named for w in words) <= MAX_NAMED * len(words):
            continue  # the whole name is a candidate itself
        m = re.search(r"\s+of\s+", text)
        before = terms(text[: m.start()]) if m else []
        if before and all(w in q.named for w in before):
            out.append((s + m.end(), e, label))
    return out


def _counts(q: Question, words: list[str], after: str) -> tuple[bool, bool]:
    """Whether a number counts what a "how many" question asks about (its own words or the noun after it
    name it, or a noun of like meaning: "400 representatives" for "delegates"), and whether it counts
    something else instead ("the three goals" for "vehicles")."""
    following = []
    for word in _CLAUSE_END.split(after, 1)[0].split()[:COUNTED_WORDS]:
        if word.lower() in STOPWORDS:
            break  # "24 and four more": what a number counts comes right after it
        following.append(word)
    counted = set(terms(" ".join(following)))
    if set(q.counted) & (counted | set(words)):
        return True, False
    if not counted or q.counted_noun is None:
        return False, False
    nouns = [w.lower() for w in following if terms(w)]
    alike = similarity(q.counted_noun.lower(), nouns) >= SAME_THING
    return alike, not alike


def rank(cands: list[Candidate]) -> list[Candidate]:
    """The candidates scored by the learned ranker (probability of being the answer), best first."""
    if not cands:
        return []
    weights = ranker_weights()
    logits = np.vstack([c.features for c in cands]) @ weights
    for c, z in zip(cands, logits.tolist(), strict=True):
        c.score = 1.0 / (1.0 + math.exp(-z))
    return sorted(cands, key=lambda c: -c.score)


@lru_cache(maxsize=1)
def _ranker() -> dict:
    try:
        model = json.loads(RANKER_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RuntimeError(f"the answer ranker {RANKER_PATH} is missing or damaged: reinstall rag") from e
    if tuple(model.get("features", ())) != FEATURES:
        raise RuntimeError(f"{RANKER_PATH} was fitted on other features: run python -m eval.train_ranker")
    return model


def ranker_weights() -> np.ndarray:
    return np.asarray(_ranker()["weights"], dtype=np.float32)


def ranker_threshold() -> float:
    """Probability under which the best candidate is not offered as an answer."""
    return float(_ranker()["abstain_below"])


def _head_words(span: str) -> list[str]:
    """The words that may head a name, likeliest first: the one before its first "of" ("Ministry of
    Commerce") and its last ("Jiaojiang District"); "the District Party Committee" is a committee."""
    words = span.split()
    lowered = [w.lower() for w in words]
    heads = [words[lowered.index("of", 1) - 1]] if "of" in lowered[1:] else []
    return heads + words[-1:]


# places of one level each: a province is no city. Not "region", "area" or "place", which are any of them;
# a state and a country may be one.
_PLACE_LEVELS = {
    t: level
    for level, words in enumerate(
        ["city town village", "district county prefecture", "province", "state country", "continent"]
    )
    for w in words.split()
    for t in terms(w)
}


def _another_place(span: str, q: Question) -> bool:
    """Whether a name is headed by a place of another level than a "which city/province ..." question
    asks for: "Jilin Province" for a city, "Jiaojiang District" for a country."""
    if q.head not in _PLACE_LEVELS:
        return False
    levels = {_PLACE_LEVELS[t] for t in _heads(span) if t in _PLACE_LEVELS}
    return bool(levels) and _PLACE_LEVELS[q.head] not in levels


def _heads(span: str) -> set[str]:
    """The stemmed head nouns of a name (see :func:`_head_words`)."""
    return {t for w in _head_words(span) for t in terms(w)}


def _pairs(words: list[str]) -> set[frozenset[str]]:
    """Adjacent content words, unordered: "accelerate the cultivation" matches "cultivation ...
    accelerated"."""
    return {frozenset(p) for p in zip(words, words[1:], strict=False) if p[0] != p[1]}


_NOT_MODIFIERS = frozenset("a an the and or of this that these those its their his her".split())


def _kind_of(text: str, words: list[str], q: Question) -> float:
    """For "what kind of <words>": a noun phrase headed by the question's head noun with a modifier the
    question lacks ("green and low-carbon automotive development", not "the transformation and
    development"), scored by the share of <words> it holds ("automotive development": all)."""
    raw = text.lower().split()
    if not (
        q.kind_words
        and len(raw) > 1
        and words
        and words[-1] == q.head
        and raw[-2] not in _NOT_MODIFIERS
        and any(w not in q.named for w in words)
    ):
        return 0.0
    return sum(w in words for w in q.kind_words) / len(q.kind_words)


def _letters(text: str) -> str:
    """Letters and digits, lower-cased: "Hong Qi" -> "hongqi"."""
    return re.sub(r"[\W_]+", "", text.lower())


def _possessive(span: str, following: str) -> bool:
    """Whether a span ends in 's or is followed by it."""
    return span.endswith(("'s", "’s")) or following in ("'s", "’s")


def _missing_share(weights: dict[str, float], present: set[str]) -> float:
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t not in present) / total if total else 0.0


def _gap(s: int, e: int, a: int, b: int, text: str, offset: int) -> float:
    """Words between two spans of the same sentence."""
    lo, hi = (e, a) if e <= a else (b, s)
    if hi <= lo:
        return 0.0
    return float(len(text[lo - offset : hi - offset].split()))
