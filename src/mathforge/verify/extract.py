r"""Find the final answer in a full model response.

Order of evidence, strongest first (the MATH/Minerva conventions and
Math-Verify's extraction targets):

1. the last `\boxed{}` / `\fbox{}` (braces matched), joined with the boxes just
   before it when only a short separator stands between them
   (`\boxed{1}, \boxed{2}`; Math-Verify's rule);
2. GSM8K `#### 42`;
3. the last answer phrase: "Final Answer: The final answer is $X$. I hope it
   is correct." (Minerva), "The answer is", "Answer:", "Answer $X$"; inside the
   phrase a math span wins, and prose is cut to what follows its last "is";
4. the GSM8K model-solution convention: the last line of what follows a final
   `A:` line label (`Q: ... A: 72`), reduced like an answer phrase;

then, in lenient mode only:

5. a response that is nothing but an answer (`2x + 3`, `10 square units`);
6. the last math span (`$...$`, `\(...\)`, `\[...\]`; inline ones may not span
   lines), bold span or number, whichever ends last.

Before searching, JSON double escaping is undone, a chat-template turn marker
(`<|im_start|>` ...) ends the response, so does a `Q:` line after an `A:` line
(a few-shot model inventing the next question), and a `<think>` block is
skipped when an answer follows it. Extended beyond Math-Verify: prose inside an answer
phrase is reduced to its value, and unit-only trailing words keep a response
"bare". Every step is linear in the response length.
"""

from __future__ import annotations

import re

from mathforge.verify.normalize import UNIT_WORDS, matching_brace, unescape

_TURN_MARKER = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|end|user|assistant|start_header_id)\|>|</s>")
_BOXED = re.compile(r"\\(?:boxed|fbox|framebox)\s*(\{)?")
_GSM8K = re.compile(r"####\s*([^\n]+)")
_ANSWER_MARKER = re.compile(
    r"(?i)(?:final\s+answer|the\s+answers?|\banswers?)(?:\s+(?:is|are|would\s+be|will\s+be)\s*:?|\s*\**\s*[:：=])\s*"
    r"|(?i:\b(?:final\s+)?answer)\s*(?=\$|\\\(|\\\[)"
)
# GSM8K few-shot turns: "Q: <question>" then "A: <solution>", each label at a line start.
_A_LINE = re.compile(r"(?m)^[ \t]*\**A\**[ \t]*[:：][ \t]*")
_Q_LINE = re.compile(r"(?m)^[ \t]*\**Q\**[ \t]*[:：]")
# Multiple-choice options ("A: 3", "B: 4") are not a solution line.
_OPTION_LINE = re.compile(r"(?m)^[ \t]*\(?[B-E]\)?[ \t]*[:：)]")
_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")
# Words by which a model takes back an earlier boxed answer instead of adding to it.
_CORRECTION = re.compile(r"(?i)\b(?:wrong|incorrect|not|mistake|actually|wait|instead|rather|correct(?:ion|ed)?)\b")
_COPULA = re.compile(r"(?i)\s(?:is|are|equals|was|be|=)\s+(?=\S)")
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.\\{])[-+]?(?:\\[dt]?frac\{\d+\}\{\d+\}|\d+(?:[.,]\d+)*(?:\s*/\s*\d+)?)(?:\s*\\?%)?"
)
_BOLD = re.compile(r"\*\*([^*\n]{1,200})\*\*")
_SENTENCE_END = re.compile(r"\.(?=\s+[A-Z(\[])|\.\s*$|\s(?:I hope|Hope)\b")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}(?![A-Za-z(])")
# Letters of other scripts (CJK, Arabic, Devanagari...) are prose; Greek letters may be math.
_FOREIGN_LETTER = re.compile(r"[^\x00-\x7f\u0370-\u03ff\u00b2\u00b3\u00b9\u2070-\u209f\W\d_]")
_CONNECTOR_WORDS = frozenset({"and", "or"})
# Two-letter English words: prose outside math, never a variable product like "xy".
_SHORT_WORD = re.compile(
    r"(?<![\\A-Za-z])(?:"
    + "|".join(f"[{w[0]}{w[0].upper()}]{w[1]}" for w in "so is we it of to as at be by if an on do my us he".split())
    + r")(?![A-Za-z(])"
)
# Text that looks like words but is not prose: \text{} contents, environment and font names, subscripts.
_NON_PROSE = re.compile(
    r"\\(?:text\w*|mbox|mathrm|mathbf|mathbb|mathcal|operatorname|begin|end)\s*\{[^{}]*\}|_\{[^{}]*\}"
)
_MAX_BOX_GAP = 70


def extract_answer(response: str, *, mode: str = "lenient") -> str | None:
    r"""Return the final answer in `response`, or None when there is none.

    `mode="strict"` accepts only an explicit final answer (boxed, "####",
    an answer phrase); `mode="lenient"` also a bare response and, last, the
    final math span or number.

    >>> extract_answer(r"So $x = 2$ and the area is $\boxed{14{,}916}$.")
    '14{,}916'
    >>> extract_answer("Final Answer: The final answer is $(0, 0)$. I hope it is correct.")
    '$(0, 0)$'
    >>> extract_answer("We get 3 apples and 5 pears.", mode="strict") is None
    True
    >>> extract_answer("We get 3 apples and 5 pears.")
    '5'
    """
    if mode not in ("strict", "lenient"):
        raise ValueError(f"mode must be 'strict' or 'lenient', not {mode!r}")
    text = _cut_follow_up_question(_cut_turns(unescape(response)))
    thinking, answer_part = _split_thinking(text)
    # Strict mode trusts the thinking only when nothing follows it; lenient mode falls back to it.
    parts = (answer_part, thinking) if mode == "lenient" or not answer_part.strip() else (answer_part,)
    for part in parts:
        if not part.strip():
            continue
        found = _explicit_answer(part)
        if found is not None:
            return found
        if mode == "lenient":
            found = _implicit_answer(part)
            if found is not None:
                return found
    return None


def _cut_turns(text: str) -> str:
    """End the response at a chat-template turn marker (the model started a new turn)."""
    for match in _TURN_MARKER.finditer(text):
        if text[: match.start()].strip():
            return text[: match.start()]
    return _TURN_MARKER.sub("", text)


def _cut_follow_up_question(text: str) -> str:
    """End the response at a `Q:` line that follows an `A:` line: the model began the next few-shot turn."""
    answer = _A_LINE.search(text)
    if answer is None:
        return text
    question = _Q_LINE.search(text, answer.end())
    return text[: question.start()] if question else text


def _split_thinking(text: str) -> tuple[str, str]:
    """Return (thinking, answer part); a response without a closed think block is all answer."""
    if "</think>" in text:
        thinking, _, answer = text.rpartition("</think>")
        return thinking.replace("<think>", ""), answer
    return "", text.replace("<think>", "")


def _explicit_answer(text: str) -> str | None:
    """Return the explicit answer stated last: a box group, a '####' line or an answer phrase."""
    found: list[tuple[int, str]] = []
    boxed = last_boxed(text)
    if boxed is not None:
        found.append(boxed)
    gsm8k = list(_GSM8K.finditer(text))
    if gsm8k and gsm8k[-1].group(1).strip():
        found.append((gsm8k[-1].start(), gsm8k[-1].group(1).strip()))
    for marker in reversed(list(_ANSWER_MARKER.finditer(text))):
        segment = _refine(_segment(text, marker.end()))
        if segment:
            found.append((marker.start(), segment))
            break
    a_line = _a_line_answer(text)
    if a_line is not None:
        found.append(a_line)
    return max(found)[1] if found else None


def _a_line_answer(text: str) -> tuple[int, str] | None:
    """Return (start, answer) from the last line of what follows the final `A:` label, if any.

    Few-shot GSM8K solutions are "A: <reasoning>" whose last line carries the
    result ("A: 72", "A: ... so she makes $18."). Skipped for multiple-choice
    option lists ("A: 3" followed by "B: 4").
    """
    labels = list(_A_LINE.finditer(text))
    if not labels:
        return None
    rest = text[labels[-1].end() :]
    if _OPTION_LINE.search(rest):
        return None
    lines = [line for line in rest.splitlines() if line.strip()]
    if not lines:
        return None
    segment = _refine(_leading_span(lines[-1].strip()) or lines[-1])
    return (labels[-1].start(), segment) if segment else None


def last_boxed(text: str) -> tuple[int, str] | None:
    r"""Return (start, content) of the last `\boxed{}`, joined with close preceding boxes by ", ".

    >>> last_boxed(r"\boxed{-2} \quad \text{and} \quad \boxed{1}")
    (34, '-2, 1')
    """
    boxes: list[tuple[int, int, str]] = []
    position = 0
    for match in _BOXED.finditer(text):
        if match.start() < position:
            continue
        if match.group(1) is None:
            token = re.match(r"\s*([^\s$.,]+)", text[match.end() :])
            if token:
                boxes.append((match.start(), match.end() + token.end(), token.group(1)))
                position = match.end() + token.end()
            continue
        end = matching_brace(text, match.end() - 1)
        if end < 0:
            boxes.append((match.start(), len(text), text[match.end() :]))
            break
        boxes.append((match.start(), end + 1, text[match.end() : end]))
        position = end + 1
    boxes = [box for box in boxes if box[2].strip()]
    if not boxes:
        return None
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[1] : group[0][0]]
        if len(gap) < 10 or len(gap) < _MAX_BOX_GAP and _SEPARATOR.search(gap) and not _CORRECTION.search(gap):
            if box[2].strip() != group[0][2].strip():
                group.insert(0, box)
            continue
        break
    return group[-1][0], ", ".join(box[2].strip() for box in group)


def _segment(text: str, start: int) -> str:
    """Return the answer text after a marker: a leading math span, else the rest of the sentence."""
    rest = text[start:].lstrip(" \t*:")
    span = _leading_span(rest)
    if span is not None:
        return span
    line = rest.split("\n", 1)[0]
    end = _SENTENCE_END.search(line)
    return line[: end.start()] if end else line


def _leading_span(text: str) -> str | None:
    """Return the math spans at the start of `text` with what joins them (`$12$ and $13$`)."""
    spans = math_spans(text[:2000])
    if not spans or spans[0][0] != 0:
        return None
    end = spans[0][1]
    for span_start, span_end, _ in spans[1:]:
        between = text[end:span_start]
        if between.strip() and not re.fullmatch(r"[\s,;]*(?:and|or|,)?[\s,;]*", between):
            break
        end = span_end
    return text[:end]


def math_spans(text: str) -> list[tuple[int, int, str]]:
    r"""Return (start, end, content) of `$...$`, `$$...$$`, `\(...\)`, `\[...\]` spans, in order.

    Inline spans (`$`, `\(`) may not cross a line break; an escaped `\$` is
    currency, not a delimiter.
    """
    spans = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("$$", i):
            close = text.find("$$", i + 2)
            if close < 0:
                break
            spans.append((i, close + 2, text[i + 2 : close]))
            i = close + 2
        elif text[i] == "$" and (i == 0 or text[i - 1] != "\\"):
            close = _inline_close(text, i + 1)
            if close < 0:
                i += 1
                continue
            spans.append((i, close + 1, text[i + 1 : close]))
            i = close + 1
        elif text.startswith("\\(", i) or text.startswith("\\[", i):
            closer = "\\)" if text[i + 1] == "(" else "\\]"
            close = text.find(closer, i + 2)
            if close < 0 or closer == "\\)" and "\n" in text[i + 2 : close]:
                i += 2
                continue
            spans.append((i, close + 2, text[i + 2 : close]))
            i = close + 2
        else:
            i += 1
    return spans


def _inline_close(text: str, start: int) -> int:
    """Index of the `$` closing an inline span opened before `start`, or -1 (no line breaks inside)."""
    i = start
    while i < len(text):
        char = text[i]
        if char == "\n":
            return -1
        if char == "\\":
            i += 2
            continue
        if char == "$":
            return i
        i += 1
    return -1


def _refine(segment: str) -> str | None:
    """Reduce an answer phrase's text to the answer itself."""
    segment = re.sub(r"^(?:\\?[\"'`*]|\s)+|(?:\\?[\"'`*]|[\s.,;:!])+$", "", segment)
    if not re.search(r"[A-Za-z0-9\\]", segment):
        return None
    if not _has_prose(segment):
        return segment
    copulas = [match for match in _COPULA.finditer(segment) if not _inside_span(segment, match.start())]
    if copulas:
        tail = segment[copulas[-1].end() :]
        if not _has_prose(tail):
            return _refine(tail)
    return _last_value(segment)


def _inside_span(text: str, position: int) -> bool:
    return any(start < position < end for start, end, _ in math_spans(text))


def _has_prose(text: str) -> bool:
    """Tell whether text holds words beyond units and connectors (outside math spans and \\text{})."""
    outside = text
    for start, end, _ in reversed(math_spans(text)):
        outside = outside[:start] + " " + outside[end:]
    outside = re.sub(_NON_PROSE, " ", outside)
    if _FOREIGN_LETTER.search(outside):
        return True
    if _SHORT_WORD.search(outside):
        return True
    words = [word.lower() for word in _WORD.findall(outside)]
    return any(word not in _CONNECTOR_WORDS and word not in UNIT_WORDS for word in words)


def _implicit_answer(text: str) -> str | None:
    stripped = text.strip()
    if _is_bare(stripped):
        return stripped
    return _last_value(text)


def _is_bare(text: str) -> bool:
    """Tell whether the whole text is an answer: one math span, one word, or math without prose."""
    if not text or len(text) > 1000:
        return False
    spans = math_spans(text)
    if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(text):
        return True
    if re.fullmatch(r"[A-Za-z][\w'-]*", text):
        return True
    return not _has_prose(text)


def _last_value(text: str) -> str | None:
    """Return the math span, bold span or number that ends last (spans win ties)."""
    best: tuple[int, int, str] | None = None
    for start, end, content in math_spans(text):
        if content.strip() and not _has_prose(content):
            best = (end, 1, content.strip())
    for match in _BOLD.finditer(text):
        content = match.group(1).strip()
        value = content if not _has_prose(content) else _last_number(content)
        if value and (best is None or (match.end(), 1) > best[:2]):
            best = (match.end(), 1, value)
    numbers = list(_NUMBER.finditer(text))
    if numbers and (best is None or numbers[-1].end() > best[0]):
        best = (numbers[-1].end(), 0, numbers[-1].group().strip())
    return best[2] if best else None


def _last_number(text: str) -> str | None:
    numbers = list(_NUMBER.finditer(text))
    return numbers[-1].group().strip() if numbers else None
