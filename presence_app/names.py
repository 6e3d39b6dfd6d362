"""User names: how typed text becomes a display form and a user identity.

The display form is the typed name after clean-up; two names are the same user when
their display forms match after ``str.casefold()``. NFKC runs first so odd spaces and
compatibility letters become plain ones, then invisible characters go (format
characters, blank fillers, stray variation selectors; those that build an emoji, a
flag or a variant stay), and only then are ends trimmed and whitespace collapsed,
so nothing hides at the edges.
"""

from __future__ import annotations

import unicodedata

import regex

MAX_NAME_LENGTH: int = 32

# Refuse huge payloads before any Unicode work; no real name comes close.
_MAX_RAW_CODE_POINTS = 1000

# Removing an invisible character can bring an accent next to its letter, which NFKC
# would then compose; clean-up repeats until stable (two passes at most in practice).
_MAX_PASSES = 4

# Tab, newline and carriage return are ordinary typing and become spaces; any other
# control character is almost certainly an attack or a paste accident.
_FORBIDDEN_CONTROL = regex.compile(r"[\p{Cc}--[\t\n\r]]", regex.V1)
_SURROGATE = regex.compile(r"\p{Cs}")

# The zero-width joiner and tag characters are the only format characters that can
# build a visible character, so they get a second look instead of blanket removal.
_FORMAT_EXCEPT_BUILDERS = regex.compile(
    r"[\p{Cf}--[\u200D\U000E0020-\U000E007F]]", regex.V1
)

# One emoji, optionally followed by skin tones and variation selectors.
_EMOJI = (
    r"\p{Extended_Pictographic}"
    r"[\p{Emoji_Modifier}\uFE00-\uFE0F\U000E0100-\U000E01EF]*"
)
_BUILDERS = regex.compile(
    r"(?P<keep>"
    r"\U0001F3F4[\U000E0020-\U000E007E]+\U000E007F"  # subdivision flag
    rf"|{_EMOJI}(?:\u200D{_EMOJI})+"  # emoji ZWJ sequence
    r")"
    r"|[\u200D\U000E0020-\U000E007F]"
)

# Blank letters that show nothing in a name: the combining grapheme joiner, the
# Hangul fillers, the Khmer inherent vowels (all default-ignorable, none a
# format character).
_BLANK = regex.compile(r"[\u034F\u115F\u1160\u17B4\u17B5\u3164\uFFA0]")

# A variation selector picks a glyph for the character before it; after any
# other character (a plain letter, a space) it is invisible and means nothing.
_STRAY_SELECTOR = regex.compile(
    r"(?<![\p{Emoji}\p{Ideographic}\p{Sm}\p{So}\p{Myanmar}])[\uFE00-\uFE0F]"
    r"|(?<!\p{Ideographic})[\U000E0100-\U000E01EF]"
    r"|(?<!\p{Mongolian})[\u180B-\u180D\u180F]",
    regex.V1,
)

_GRAPHEME = regex.compile(r"\X")


class NameRejectedError(ValueError):
    """A name that cannot be used; the message is meant for the person typing it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def clean_name(raw: str) -> str:
    """Return the display form of ``raw`` or raise ``NameRejectedError``."""
    if raw == "":
        raise NameRejectedError("Please enter a name.")
    if len(raw) > _MAX_RAW_CODE_POINTS:
        raise NameRejectedError(
            f"Names can be at most {MAX_NAME_LENGTH} characters long."
        )
    # Checked on the raw text because Python treats some controls as whitespace,
    # and collapsing would otherwise quietly turn them into spaces.
    if _FORBIDDEN_CONTROL.search(raw):
        raise NameRejectedError("Names cannot contain control characters.")
    # A lone surrogate is half of a character; it cannot even be stored as UTF-8.
    if _SURROGATE.search(raw):
        raise NameRejectedError("That name contains a broken character.")
    display = _until_stable(raw)
    if display == "":
        raise NameRejectedError("That name has no visible characters.")
    length = grapheme_length(display)
    if length > MAX_NAME_LENGTH:
        raise NameRejectedError(
            f"Names can be at most {MAX_NAME_LENGTH} characters long "
            f"(this one has {length})."
        )
    return display


def user_key(display: str) -> str:
    """Return the identity of the user with this display form."""
    return display.casefold()


def grapheme_length(text: str) -> int:
    """Count characters the way a person sees them (extended grapheme clusters)."""
    return len(_GRAPHEME.findall(text))


def _until_stable(text: str) -> str:
    # A display form must clean to itself, or one user could end up with two keys.
    for _ in range(_MAX_PASSES):
        cleaned = _clean_once(text)
        if cleaned == text:
            break
        text = cleaned
    return text


def _clean_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _remove_invisible(text)
    return " ".join(text.split())


def _remove_invisible(text: str) -> str:
    text = _FORMAT_EXCEPT_BUILDERS.sub("", text)
    text = _BLANK.sub("", text)
    text = _BUILDERS.sub(lambda match: match.group("keep") or "", text)
    return _STRAY_SELECTOR.sub("", text)
