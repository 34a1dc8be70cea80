"""Offline language detection by stop-word and letter evidence.

Good enough for one sentence of a privacy policy: function words are dense in legal prose and
each language below has a set of frequent words that the others rarely use. Greek is decided
by its script. No models, no downloads.
"""

from __future__ import annotations

import re

_STOPWORDS: dict[str, str] = {
    "en": """the and of to in is are be we you your our that this with for by from or as
        may will can not on it its which when how use used using any such other these their
        they have has also about would should us who if only been at""",
    "fr": """le la les des du de un une et est sont nous vous votre vos notre nos que qui
        dans pour par sur avec ce cette ces il elle ils au aux pas ne peut peuvent être
        leur leurs ou lorsque afin données selon comme également si sans""",
    "de": """der die das den dem des und ist sind wir sie ihre ihr ihren ihrer ihnen unsere
        unser unseren unserer mit für von zu zur zum auf im ein eine einen einer nicht auch
        oder wenn können kann werden wird wie bei dass diese dieser durch sowie nach über""",
    "es": """el la los las de del y es son nosotros tu tus su sus que en para por con un una
        unos como más puede pueden podemos sobre este esta estos no se al también cuando
        nuestro nuestra nuestros datos usted lo le si""",
    "it": """il lo la gli le di del della dei delle e è sono noi tuo tua tuoi tue suo sua
        che per con un una come nel nella nei al alla ai agli non può possono possiamo
        questo questa questi anche quando nostro nostra nostri dati se o essere""",
    "nl": """de het een en van is zijn wij we jij je uw u ons onze dat die deze voor met
        door op aan te niet ook of als kunnen kan worden wordt wanneer hoe naar bij om
        gegevens uit over zoals""",
    "pl": """i w z na do jest są my ty twoje twoich twój nasz nasze naszych nasi że który
        która które dla przez od się nie lub oraz jak może mogą być będzie tym tego ten
        ta te jeśli jako dane danych również aby""",
    "pt": """o a os as de do da dos das e é são nós você seu sua seus suas que em para por
        com um uma como mais pode podem podemos sobre este esta não se ao também quando
        nosso nossa nossos dados""",
}

# Letters that strongly suggest one language (each occurrence adds a little evidence).
_LETTERS: dict[str, str] = {
    "de": "äöüß",
    "fr": "èêëçœàùâîôû",
    "es": "ñ¿¡áóú",
    "it": "àèìòù",
    "pl": "ąęłśżźćń",
    "pt": "ãõç",
    "nl": "ĳ",
}

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
_LATIN = re.compile(r"[A-Za-zÀ-ÿĀ-ſ]")


def _build_index() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for lang, words in _STOPWORDS.items():
        for w in words.split():
            index.setdefault(w, []).append(lang)
    return {w: tuple(langs) for w, langs in index.items()}


class LanguageDetector:
    """Scores languages by weighted stop-word hits; ambiguous words count fractionally."""

    def __init__(self) -> None:
        self._index = _build_index()
        # The share each stop-word adds to each of its languages, computed once (the same
        # float values, added in the same order, as 1.0 / len(langs) per occurrence).
        self._shares = {w: (1.0 / len(langs), langs) for w, langs in self._index.items()}
        self._letters = {c: lang for lang, cs in _LETTERS.items() for c in cs}
        self._letter_re = re.compile("[" + "".join(self._letters) + "]")

    def scores(self, text: str) -> dict[str, float]:
        scores: dict[str, float] = dict.fromkeys(_STOPWORDS, 0.0)
        lowered = text.lower()
        shares = self._shares
        for w in _WORD.findall(lowered):
            if "’" in w:
                w = w.replace("’", "'")
            hit = shares.get(w)
            if hit is not None:
                share, langs = hit
                for lg in langs:
                    scores[lg] += share
            elif "'" in w:
                # Elision: l'IA, d'un, dell'utente
                head = w.split("'")[0]
                if head in {"l", "d", "qu", "n", "s", "j", "c"}:
                    scores["fr"] += 0.7
                elif head in {"dell", "all", "nell", "un", "sull", "dall"}:
                    scores["it"] += 0.7
        letters = self._letters
        for ch in self._letter_re.findall(lowered):
            scores[letters[ch]] += 0.3
        return scores

    def detect(self, text: str) -> str:
        sample = text[:4000]
        greek = len(_GREEK.findall(sample))
        if greek and greek >= len(_LATIN.findall(sample)):
            return "el"
        scores = self.scores(sample)
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        (best, top), (_, second) = ranked[0], ranked[1]
        if top < 1.0 or top - second < 0.5:
            return "und"
        return best


_DETECTOR = LanguageDetector()


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (en fr de es it nl pl pt el), or ``"und"``."""
    return _DETECTOR.detect(text)
