"""Text normalisation for comparing replies with reference answers, in Chinese and English.

Two replies that a reader would call "the same answer" should normalise to the same string:
full-width forms (ＡＢＣ１２３, full-width punctuation) fold to ASCII, Chinese and ASCII punctuation go,
case goes, accents go (Brasília = Brasilia), whitespace collapses, and spaces next to CJK characters
(which carry no meaning in Chinese) are dropped.
"""

from __future__ import annotations

import re
import unicodedata

# Punctuation that NFKC leaves alone (CJK brackets and quotes, the ideographic full stop and comma,
# the enumeration comma 、, middle dots) plus every Unicode punctuation/symbol category below.
_CJK_PUNCT = "。，、；：？！…—–·・“”‘’「」『』《》〈〉【】〔〕（）〖〗～﹏"
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# Spaces next to a CJK character carry no meaning ("我是 Tutu 的小助手" = "我是Tutu的小助手").
_SPACE_BY_CJK = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")
_WS = re.compile(r"\s+")
#: One comparison unit: a CJK character, or a run of other non-space characters (a word, a number).
UNIT = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def _is_punct(ch: str) -> bool:
    if ch in _CJK_PUNCT:
        return True
    cat = unicodedata.category(ch)
    # P*: punctuation; S*: symbols ($, +, emoji). Keep letters, digits, marks and spaces.
    return cat[0] in ("P", "S")


def fold(text: str) -> str:
    """Full-width to half-width, case folded, accents stripped; punctuation and spacing kept."""
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", text)


def normalize(text: str) -> str:
    """The comparison form of `text`: folded, punctuation replaced by spaces, whitespace collapsed.

    >>> normalize("  Ｂｅｒｌｉｎ！ ")
    'berlin'
    >>> normalize("我是 Tutu 的小助手。")
    '我是tutu的小助手'
    """
    text = fold(text or "")
    # Apostrophes separate like any punctuation: "Tutu's" -> "tutu s", so the name stays a whole word.
    text = "".join(" " if _is_punct(ch) else ch for ch in text)
    text = _WS.sub(" ", text).strip()
    return _SPACE_BY_CJK.sub("", text)


def has_cjk(text: str) -> bool:
    """Whether `text` holds any CJK character (decides character- or word-level comparison)."""
    return re.search(f"[{_CJK}]", text) is not None


def units(text: str) -> list[str]:
    """Comparison units of normalised text: CJK characters one by one, other words whole.

    "我是tutu的小助手" -> ['我', '是', 'tutu', '的', '小', '助', '手']
    """
    return UNIT.findall(text)
