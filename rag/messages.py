"""What a reply says about itself, in the language of the question (the codes of
:data:`rag.multilingual.LANGUAGES`); English for any other."""

from __future__ import annotations

# decline: how a declining reply begins. english: heads a reply that quotes the English source instead
# of a short answer. never: a decline's reason when the question names what no document holds ({names}).
# related: a decline's reason when nothing read answers it; the passages are listed as related reading.
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "decline": "The documents don't say.",
        "english": "The documents are in English; this is what they say:",
        "never": "They never mention {names}.",
        "related": "The closest passages are listed below as related reading, not as an answer.",
    },
    "zh": {
        "decline": "文档中没有提到。",
        "english": "来源文档是英文的，原文如下：",
        "never": "文档从未提到 {names}。",
        "related": "下面列出最接近的段落，仅供参考，并非答案。",
    },
    "ja": {
        "decline": "文書には書かれていません。",
        "english": "出典は英語の文書です。原文は次のとおりです：",
        "never": "文書には {names} は出てきません。",
        "related": "最も近い段落を参考として下に示します（答えではありません）。",
    },
    "ko": {
        "decline": "문서에 나와 있지 않습니다.",
        "english": "출처 문서는 영어입니다. 원문은 다음과 같습니다:",
        "never": "문서에 {names}은(는) 나오지 않습니다.",
        "related": "가장 가까운 단락을 참고용으로 아래에 보여 드립니다(답이 아닙니다).",
    },
    "de": {
        "decline": "Die Dokumente sagen es nicht.",
        "english": "Die Quellen sind auf Englisch; dort steht:",
        "never": "Sie erwähnen {names} nie.",
        "related": "Die nächstliegenden Passagen stehen unten als verwandte Lektüre, nicht als Antwort.",
    },
    "fr": {
        "decline": "Les documents ne le disent pas.",
        "english": "Les sources sont en anglais ; voici ce qu'elles disent :",
        "never": "Ils ne mentionnent jamais {names}.",
        "related": "Les passages les plus proches figurent ci-dessous à titre indicatif, pas comme réponse.",
    },
    "es": {
        "decline": "Los documentos no lo dicen.",
        "english": "Las fuentes están en inglés; esto es lo que dicen:",
        "never": "Nunca mencionan {names}.",
        "related": "Los pasajes más cercanos se muestran abajo como lectura relacionada, no como respuesta.",
    },
    "it": {
        "decline": "I documenti non lo dicono.",
        "english": "Le fonti sono in inglese; ecco cosa dicono:",
        "never": "Non menzionano mai {names}.",
        "related": "I passaggi più vicini sono elencati sotto come letture correlate, non come risposta.",
    },
    "pt": {
        "decline": "Os documentos não dizem.",
        "english": "As fontes estão em inglês; eis o que dizem:",
        "never": "Eles nunca mencionam {names}.",
        "related": "Os trechos mais próximos estão abaixo como leitura relacionada, não como resposta.",
    },
    "nl": {
        "decline": "De documenten zeggen het niet.",
        "english": "De bronnen zijn in het Engels; dit staat erin:",
        "never": "Ze noemen {names} nergens.",
        "related": "De dichtstbijzijnde passages staan hieronder als verwante tekst, niet als antwoord.",
    },
    "pl": {
        "decline": "Dokumenty tego nie mówią.",
        "english": "Źródła są po angielsku; oto co mówią:",
        "never": "Nigdzie nie wspominają o {names}.",
        "related": "Najbliższe fragmenty podano poniżej jako powiązaną lekturę, nie jako odpowiedź.",
    },
    "ru": {
        "decline": "В документах об этом не сказано.",
        "english": "Источники на английском языке; вот что в них сказано:",
        "never": "В них нигде не упоминается {names}.",
        "related": "Ниже приведены наиболее близкие фрагменты — для справки, а не как ответ.",
    },
    "tr": {
        "decline": "Belgelerde bu yazmıyor.",
        "english": "Kaynaklar İngilizce; şöyle diyor:",
        "never": "{names} hiç geçmiyor.",
        "related": "En yakın bölümler aşağıda cevap olarak değil, ilgili okuma olarak listelenmiştir.",
    },
    "ar": {
        "decline": "لا تذكر الوثائق ذلك.",
        "english": "المصادر باللغة الإنجليزية، وهذا ما تقوله:",
        "never": "لا تذكر الوثائق {names} أبدًا.",
        "related": "المقاطع الأقرب مدرجة أدناه للاطلاع فقط، وليست إجابة.",
    },
    "th": {
        "decline": "เอกสารไม่ได้ระบุไว้",
        "english": "เอกสารต้นฉบับเป็นภาษาอังกฤษ ข้อความมีดังนี้:",
        "never": "เอกสารไม่เคยกล่าวถึง {names}",
        "related": "ข้อความที่ใกล้เคียงที่สุดแสดงไว้ด้านล่างเพื่อใช้อ้างอิง ไม่ใช่คำตอบ",
    },
}


def message(language: str, key: str, **values: str) -> str:
    """The message ``key`` in ``language`` (English when there is none), with ``values`` filled in."""
    table = MESSAGES.get(language, MESSAGES["en"])
    return table[key].format(**values)
