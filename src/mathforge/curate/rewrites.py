"""Deterministic rewrites of benchmark items: the planted leaks decontamination is measured on.

A benchmark problem that slips into the seeds leaves this pipeline changed:
template synthesis gives it new numbers, paraphrase gives it new wording. To
measure what the decontamination layers catch without an LLM in the loop,
`change_numbers` and `reword` imitate those two edits with fixed rules, so a
planted set is the same on every machine:

- `change_numbers`: every number (integers and decimals, inside LaTeX too)
  becomes another number of the same shape, chosen from a hash of the text
  and the number's position; digits inside words (``x2``) stay.
- `reword`: phrase-level synonym substitution from a fixed table (``how
  many`` -> ``what number of``, ``buys`` -> ``purchases``, ``find`` ->
  ``determine``, ...), first names swapped for others, and the closing
  question moved to the front ("<question> Use the following: <facts>").
  That rewords most 13-token windows, which n-gram checks need, while the
  problem stays the same problem.

These rules are simpler than an LLM's paraphrase (no change of setting or of
sentence structure inside a clause); results measured on them are stated as
such.
"""

from __future__ import annotations

import hashlib
import re

# Longest phrases first inside each entry's alternatives is not needed: one regex per entry, applied in order.
_SYNONYMS: tuple[tuple[str, str], ...] = (
    ("how many", "what number of"),
    ("how much", "what amount of"),
    ("altogether", "in all"),
    ("in total", "overall"),
    ("total", "overall"),
    ("buys", "purchases"),
    ("bought", "purchased"),
    ("buy", "purchase"),
    ("sells", "trades away"),
    ("sold", "traded away"),
    ("gives", "hands"),
    ("gave", "handed"),
    ("wants", "would like"),
    ("needs", "requires"),
    ("costs", "is priced at"),
    ("every day", "daily"),
    ("each day", "per day"),
    ("store", "shop"),
    ("friends", "pals"),
    ("children", "kids"),
    ("money", "cash"),
    ("earns", "makes"),
    ("spends", "pays out"),
    ("find", "determine"),
    ("compute", "calculate"),
    ("evaluate", "work out"),
    ("what is", "determine"),
    ("smallest", "least"),
    ("largest", "greatest"),
    ("positive integers", "positive whole numbers"),
    ("integer", "whole number"),
    ("suppose", "assume"),
    ("let", "suppose"),
    ("the number of", "the count of"),
    ("if", "given that"),
    ("then", "in that case"),
)
_NAMES = {
    "Janet": "Priya", "James": "Omar", "John": "Diego", "Mark": "Kenji", "Tom": "Arjun", "Mary": "Lena",
    "Sarah": "Yuki", "Jack": "Mateo", "Tim": "Felix", "Betty": "Ines", "Carla": "Noor", "John's": "Diego's",
    "Emily": "Chloe", "Michael": "Andre", "David": "Tariq", "Robert": "Hugo", "Lisa": "Mira", "Maria": "Elena",
    "Peter": "Ravi", "Sam": "Kofi", "Anna": "Sofia", "Jenny": "Hana", "Josh": "Luca", "Mike": "Ivan",
    "Tony": "Bruno", "Alice": "Zara", "Bob": "Ezra", "Carl": "Nils", "Jane": "Amara", "Kelly": "Rosa",
}
_NUMBER = re.compile(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?(?![A-Za-z])")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z$\\])")


def _draw(text: str, position: int, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}\0{position}\0{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def change_numbers(text: str, *, salt: str = "numbers") -> str:
    """Replace every number with a different one of the same shape (digits, decimals), deterministically.

    >>> change_numbers("Tom has 3 apples and 2.5 kg of pears.") != "Tom has 3 apples and 2.5 kg of pears."
    True
    """

    def replace(match: re.Match[str]) -> str:
        number = match.group(0)
        draw = _draw(text, match.start(), salt)
        whole, _, fraction = number.partition(".")
        if len(whole) == 1:
            new_whole = str((int(whole) + 1 + draw % 8) % 10 or 1)
        else:
            low, high = 10 ** (len(whole) - 1), 10 ** len(whole) - 1
            new_whole = str(low + draw % (high - low + 1))
            if new_whole == whole:
                new_whole = str(low + (draw + 1) % (high - low + 1))
        if fraction:
            return f"{new_whole}.{(int(fraction) + 1 + draw % 7) % 10 ** len(fraction):0{len(fraction)}d}"
        return new_whole

    return _NUMBER.sub(replace, text)


def _match_case(replacement: str, original: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() else replacement


def reword(text: str) -> str:
    """Reword a problem with the fixed synonym table, swapped names and the question moved first.

    >>> reword("Tom buys 3 apples. How many apples does Tom have?")
    'What number of apples does Arjun have? Use the following: Arjun purchases 3 apples.'
    """
    result = text
    for phrase, replacement in _SYNONYMS:
        pattern = re.compile(rf"(?<![\w\\]){re.escape(phrase)}(?!\w)", re.IGNORECASE)
        result = pattern.sub(lambda m, r=replacement: _match_case(r, m.group(0)), result)
    result = re.sub(r"\b[A-Z][a-z]+(?:'s)?\b", lambda m: _NAMES.get(m.group(0), m.group(0)), result)
    sentences = [s for s in _SENTENCE.split(result.strip()) if s]
    if len(sentences) >= 2 and sentences[-1].endswith("?"):
        facts = " ".join(sentences[:-1])
        return f"{sentences[-1]} Use the following: {facts}"
    return result
