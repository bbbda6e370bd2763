"""String normalization of extracted answers, before any parsing.

The rules come from the MATH grader tradition (hendrycks `math_equivalence`:
`\\dfrac` -> `\\frac`, `\\frac12` -> `\\frac{1}{2}`, `\\sqrt3`, `\\left`/`\\right`,
units in `\\text{}`, trailing punctuation) and from Math-Verify's LaTeX
normalization (percent words, `\\!` thousands separators, JSON double
backslashes). Extended here: double-escaped strings are detected as a whole
instead of command by command, multiple-choice letters and text wrappers are
unwrapped, connector words become list separators, and a trailing unit is
split off (with its text) so the comparison policy decides what it means.

Every function is pure and linear-time in its input; inputs are capped by the
guards before they get here.
"""

from __future__ import annotations

import re

# A run of exactly two backslashes before a command name means the whole string
# was JSON-escaped twice (`\\frac` for `\frac`); a LaTeX row break followed by a
# command is written with three (`\\\frac`), which this does not match.
_DOUBLE_ESCAPED = re.compile(r"(?<!\\)\\\\[a-zA-Z]{2,}")
_BACKSLASH_RUN = re.compile(r"\\+")
# A literal two-character "\n" that is not the start of a command (\neq, \nu, ...).
_LITERAL_NEWLINE = re.compile(r"(?<!\\)\\n(?![a-z])")

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u00f7": r"\div ",
    "\u22c5": r"\cdot ", "\u00b7": r"\cdot ", "\u03c0": r"\pi ", "\u221e": r"\infty ",
    "\u2264": r"\le ", "\u2265": r"\ge ", "\u2260": r"\ne ", "\u2248": r"\approx ",
    "\u00b1": r"\pm ", "\u2213": r"\mp ", "\u221a": r"\sqrt", "\u00b2": "^2", "\u00b3": "^3",
    "\u00b0": r"^{\circ}", "\u2229": r"\cap ", "\u222a": r"\cup ", "\u2208": r"\in ",
    "\uff0c": ",", "\uff1a": ":", "\u3002": ".", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
    "\u20ac": "", "\u00a3": "", "\u00a5": "",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

_TEXT_COMMANDS = (
    "text", "textbf", "textit", "textrm", "textnormal", "textsf", "texttt", "mbox", "hbox",
    "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathcal", "mathscr", "boldsymbol", "bm",
)
_TEXT_COMMAND_RE = re.compile(r"\\(" + "|".join(_TEXT_COMMANDS) + r")\s*\{")
_SIZING = re.compile(
    r"\\(?:left|right|middle|[bB]igg?[lr]?)\s*"
    r"(?=[()\[\]|.<>/]|\\[{}|]|\\[lr]?[vV]ert|\\[lr]angle|\\[lr]brace|\\[lr]brack)"
)
_DELIMITER_WORDS = {
    r"\lbrace": r"\{", r"\rbrace": r"\}", r"\lbrack": "[", r"\rbrack": "]", r"\langle": "(",
    r"\rangle": ")", r"\lvert": "|", r"\rvert": "|", r"\vert": "|", r"\lVert": "|", r"\rVert": "|",
    r"\Vert": "|", r"\lceil": r"\lceil ", r"\rceil": r"\rceil ",
}
# `\quad` is matched even when glued to a name (`\quadx_{2}` in model output).
_SPACES = re.compile(
    r"\\q?quad|(?<!\\)\\[,;:> ]|~|\\hspace\*?\{[^{}]*\}"
    r"|\\(?:enspace|thinspace|medspace|thickspace|hfill|displaystyle|textstyle|scriptstyle|nonumber|notag|noindent)"
    r"(?![a-zA-Z])"
)
_FRAC_VARIANTS = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_RELATION_WORDS = [
    (re.compile(r"\\leqslant|\\leq(?![a-zA-Z])|<=|\\le(?![a-zA-Z])"), r" \le "),
    (re.compile(r"\\geqslant|\\geq(?![a-zA-Z])|>=|\\ge(?![a-zA-Z])"), r" \ge "),
    (re.compile(r"\\neq(?![a-zA-Z])|!=|\\ne(?![a-zA-Z])"), r" \ne "),
    (re.compile(r"\\lt(?![a-zA-Z])"), " < "),
    (re.compile(r"\\gt(?![a-zA-Z])"), " > "),
    (re.compile(r"=>|\\Rightarrow(?![a-zA-Z])|\\implies(?![a-zA-Z])"), r" \implies "),
]
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree(?![a-zA-Z])|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}")
_PERCENT_WORDS = re.compile(r"\s*\\?%|\s*\\text\{\s*(?:percent|percentage|pct)\s*\}|\s*\b(?:percent|percentage|pct)\b")
# "and"/"or" between items (also glued, as in "1orW(x)=-1", after a digit or a bracket).
_CONNECTORS = re.compile(
    r"\\text\{\s*(?:and|or|,)\s*\}"
    r"|(?<![A-Za-z\\])(?:and|or)(?![A-Za-z])"
    r"|(?<=[\d)\]}])(?:and|or)(?=[A-Za-z\\(\[{\d+-])"
)
_INFINITY_WORDS = re.compile(r"(?<![\\a-zA-Z])(?:infinity|inf)(?![a-zA-Z])")
_TRAILING_JUNK = re.compile(r"(?:[\s.,;:]|\\\\|\\$)+$")

# Words that may follow a value as its unit. Counted things ("apples") are
# handled by the generic rule for space-separated lowercase words.
UNIT_WORDS = frozenset(
    """
    unit units square squared sq cubic cu cm mm km dm nm meter meters metre metres kilometer kilometers
    centimeter centimeters millimeter millimeters inch inches foot feet ft yard yards yd mile miles mi mph kph kmh
    gram grams kg mg kilogram kilograms pound pounds lb lbs ounce ounces oz ton tons tonne tonnes liter liters
    litre litres ml gallon gallons gal quart quarts pint pints cup cups second seconds sec secs minute minutes min
    mins hour hours hr hrs day days week weeks month months year years yr yrs dollar dollars cent cents euro euros
    yuan rupee rupees rs usd point points degree degrees deg radian radians rad people person persons student
    students times ways hectare hectares acre acres sqft
    """.split()
)
# Words that are mathematics, never units, when they follow a value.
_MATH_WORDS = frozenset("sin cos tan cot sec csc log ln exp mod pmod and or for all".split())


def unescape(text: str) -> str:
    r"""Undo JSON double escaping and literal "\n" sequences.

    >>> unescape(r"\\frac{1}{2}")
    '\\frac{1}{2}'
    >>> unescape(r"\frac{1}{2}")
    '\\frac{1}{2}'
    """
    if _DOUBLE_ESCAPED.search(text):
        text = _BACKSLASH_RUN.sub(lambda m: "\\" * ((len(m.group()) + 1) // 2), text)
    return _LITERAL_NEWLINE.sub("\n", text)


def matching_brace(text: str, start: int) -> int:
    """Return the index of the brace closing the `{` at `start`, or -1 when unbalanced."""
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def unwrap_command(text: str, command: str) -> str:
    r"""Replace every `\command{X}` by `X` (braces matched, not regex-guessed).

    >>> unwrap_command(r"x = \boxed{\frac{1}{2}}", "boxed")
    'x = \\frac{1}{2}'
    """
    pattern = re.compile(r"\\" + command + r"\s*\{")
    out = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() < position:
            continue
        end = matching_brace(text, match.end() - 1)
        if end < 0:
            break
        out.append(text[position : match.start()])
        out.append(unwrap_command(text[match.end() : end], command))
        position = end + 1
    out.append(text[position:])
    return "".join(out)


def _normalize_text_commands(text: str) -> str:
    """Map font and text wrappers to one form: a bare letter, or `\\text{words}`."""
    out = []
    position = 0
    for match in _TEXT_COMMAND_RE.finditer(text):
        if match.start() < position:
            continue
        end = matching_brace(text, match.end() - 1)
        if end < 0:
            break
        inner = _normalize_text_commands(text[match.end() : end]).strip()
        out.append(text[position : match.start()])
        letter = re.fullmatch(r"\(?\s*([A-Za-z])\s*\)?", inner)
        after_value = re.search(r"[\d})]\s*$", text[position : match.start()]) is not None
        if letter and not (after_value and match.group(1).startswith(("text", "mbox", "hbox"))):
            out.append(letter.group(1))
        elif match.group(1).startswith(("math", "bold", "bm")) and not re.search(r"[A-Za-z]{2}", inner):
            out.append(inner)
        elif inner:
            out.append(r"\text{" + inner + "}")
        position = end + 1
    out.append(text[position:])
    return "".join(out)


def _fix_command_arguments(text: str) -> str:
    r"""Brace single-token arguments: `\frac12` -> `\frac{1}{2}`, `\sqrt3` -> `\sqrt{3}`, `^\frac{a}{b}` braced."""
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\d|[a-zA-Z])\s*(?=\{)", r"\\frac{\1}", text)
    text = re.sub(r"\\frac\s*(\{(?:[^{}]|\{[^{}]*\})*\})\s*(\d|[a-zA-Z])", r"\\frac\1{\2}", text)
    text = re.sub(r"\\sqrt\s*(\d+|[a-zA-Z])", r"\\sqrt{\1}", text)
    text = re.sub(r"\^\s*\\frac\s*(\{(?:[^{}]|\{[^{}]*\})*\}\{(?:[^{}]|\{[^{}]*\})*\})", r"^{\\frac\1}", text)
    return text


def clean_latex(text: str) -> str:
    r"""Normalize an extracted answer to canonical LaTeX-ish text.

    Removes math delimiters, `\boxed`, sizing and spacing commands, unifies
    fraction, relation, degree, percent and infinity spellings, unwraps text
    fonts and multiple-choice letters, turns "and"/"or" into commas and strips
    trailing punctuation. The result still carries percent signs and units:
    their meaning is a comparison policy.

    >>> clean_latex(r"$\boxed{\dfrac12}$.")
    '\\frac{1}{2}'
    >>> clean_latex(r"\text{(C)}")
    'C'
    >>> clean_latex(r"11,\! 111,\! 111,\! 100")
    '11,111,111,100'
    """
    text = unescape(text)
    text = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], text)
    text = text.replace("\\$", " \\$ ")
    text = re.sub(r"(?<!\\)\$+|\\[()\[\]]", " ", text)
    text = unwrap_command(unwrap_command(text, "boxed"), "fbox")
    text = re.sub(r"\\(?:left|right)\s*\.", "", text)
    text = _SIZING.sub("", text)
    for word, replacement in _DELIMITER_WORDS.items():
        text = re.sub(re.escape(word) + r"(?![a-zA-Z])", lambda _m, r=replacement: r, text)
    text = re.sub(r"(?<!\\)\\!\s*", "", text)
    text = _SPACES.sub(" ", text)
    text = re.sub(r"\{\s*,\s*\}", ",", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _normalize_text_commands(text)
    text = _fix_command_arguments(text)
    text = re.sub(r"^\s*\*\*(.*)\*\*\s*$", r"\1", text, flags=re.DOTALL)  # markdown bold around it all
    text = text.replace("**", "^")
    for pattern, replacement in _RELATION_WORDS:
        text = pattern.sub(lambda _m, r=replacement: r, text)
    text = _DEGREE.sub(r"^{\\circ}", text)
    text = _PERCENT_WORDS.sub(r"\\%", text)
    text = _CONNECTORS.sub(",", text)
    text = _INFINITY_WORDS.sub(r"\\infty", text)
    text = re.sub(r"\\(?:ldots|cdots|dots)(?![a-zA-Z])", r"\\dots", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*,\s*(?:,\s*)+", ", ", text)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r"^(?:\s*[,;:=]\s*)+", "", text)
    text = _TRAILING_JUNK.sub("", text)
    letter = re.fullmatch(r"\(\s*([A-Z])\s*\)|([A-Z])\s*[.)]", text.strip())
    if letter:
        text = letter.group(1) or letter.group(2)
    return text.strip()


def split_percent(atom: str) -> tuple[str, bool]:
    r"""Split a trailing percent sign off an atom: `12.5\%` -> (`12.5`, True)."""
    stripped = re.sub(r"\s*\\%\s*$", "", atom)
    return stripped.strip(), stripped != atom


def split_currency(atom: str) -> str:
    r"""Remove currency marks around a value: `\$16,386.17` -> `16,386.17`."""
    atom = re.sub(r"\\\$|\\text\{\s*\\?\$\s*\}|(?<![A-Za-z])(?:USD|US\$|Rs\.?|EUR)(?![A-Za-z])", " ", atom)
    return atom.strip()


def split_units(atom: str) -> tuple[str, str]:
    r"""Split trailing units off a value: (`10`, `cm^2`) from `10\text{ cm}^2`.

    Units are trailing `\text{}` groups, known unit words, or lowercase words
    after a space. A letter glued to a number (`10m`) is a product with a
    variable and stays; a glued known word (`10weeks`) is a unit.

    >>> split_units(r"10\text{ cm}^{2}")
    ('10', 'cm')
    >>> split_units("10 square units")
    ('10', 'square units')
    >>> split_units("10m")
    ('10m', '')
    """
    units: list[str] = []
    while True:
        match = re.search(r"\\text\{([^{}]*)\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$", atom)
        if match and atom[: match.start()].strip():
            units.insert(0, match.group(1).strip())
            atom = atom[: match.start()].rstrip()
            continue
        match = re.search(r"(?<=[\d}).\]])\s*([A-Za-z]{2,})\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$", atom)
        spaced = match is not None and (match.group().startswith(" ") or atom[match.start() - 1] == " ")
        if match and _is_unit_word(match.group(1), spaced=spaced):
            units.insert(0, match.group(1))
            atom = atom[: match.start()].rstrip()
            continue
        match = re.search(r"(?<=[\d}).\]])\s+([A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*)\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$", atom)
        if match and all(_is_unit_word(word, spaced=True) for word in match.group(1).split()):
            units.insert(0, match.group(1))
            atom = atom[: match.start()].rstrip()
            continue
        break
    return atom, " ".join(unit for unit in units if unit)


def _is_unit_word(word: str, *, spaced: bool) -> bool:
    lower = word.lower()
    if lower in _MATH_WORDS:
        return False
    if lower in UNIT_WORDS or lower.rstrip("s") in UNIT_WORDS:
        return spaced or len(lower) >= 3
    return spaced and len(word) >= 3 and word.isalpha() and (word.islower() or word[1:].islower())


def canonical_unit(unit: str) -> str:
    """Reduce a unit text to a comparable key: lowercase, singular, no spaces."""
    words = [word.lower() for word in re.findall(r"[A-Za-z]+", unit)]
    return " ".join(word[:-1] if len(word) > 3 and word.endswith("s") else word for word in words)


def is_text_answer(atom: str) -> bool:
    r"""Tell whether an atom is words rather than mathematics (`\text{Evelyn}`, `odd`)."""
    inner = re.fullmatch(r"\\text\{([^{}]*)\}", atom.strip())
    if inner:
        return bool(re.search(r"[A-Za-z]", inner.group(1)))
    return bool(re.fullmatch(r"[A-Za-z]+(?:[ '-][A-Za-z]+)*", atom.strip()))


def text_key(atom: str) -> str:
    r"""Comparable form of a text answer: unwrapped, lowercase, single-spaced.

    Single letters keep their case: `E` (a choice) is not `e` (Euler's number).
    """
    inner = re.fullmatch(r"\\text\{([^{}]*)\}", atom.strip())
    words = (inner.group(1) if inner else atom).strip().strip(".")
    words = re.sub(r"\s+", " ", words)
    return words if len(words) == 1 else words.casefold()
