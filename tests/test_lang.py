"""Offline language detection on single sentences and documents."""

from __future__ import annotations

import pytest

from monitor.analyse import detect_language


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("We may use the information you share with us to improve our services.", "en"),
        ("Nous pouvons utiliser les informations que vous partagez avec nous.", "fr"),
        ("Wir können die Informationen, die Sie mit uns teilen, verwenden.", "de"),
        ("Podemos usar la información que compartes con nosotros para mejorar.", "es"),
        ("Possiamo utilizzare le informazioni che condividi con noi per il servizio.", "it"),
        ("We kunnen de gegevens die je met ons deelt gebruiken om de dienst te verbeteren.", "nl"),
        ("Możemy wykorzystywać informacje, które nam udostępniasz, w celu ulepszania usług.", "pl"),
        ("Μπορούμε να χρησιμοποιούμε τις πληροφορίες που μοιράζεστε μαζί μας.", "el"),
        ("Podemos usar os dados que você compartilha conosco para melhorar.", "pt"),
    ],
)
def test_single_sentences(text: str, lang: str) -> None:
    assert detect_language(text) == lang


@pytest.mark.parametrize("text", ["", "12345 !!!", "Grok", "ChatGPT Plus"])
def test_too_little_evidence_is_undetermined(text: str) -> None:
    assert detect_language(text) == "und"


def test_document_language_is_the_majority() -> None:
    doc = ("Wir verarbeiten Ihre Daten und Sie können widersprechen. " * 20) + "Privacy Policy"
    assert detect_language(doc) == "de"
