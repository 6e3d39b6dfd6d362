"""Behaviour of user-name clean-up, identity and rejection."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presence_app.names import (
    MAX_NAME_LENGTH,
    NameRejectedError,
    clean_name,
    grapheme_length,
    user_key,
)

WOMAN_TECHNOLOGIST = "\U0001f469\u200d\U0001f4bb"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
FRANCE = "\U0001f1eb\U0001f1f7"
RED_HEART = "\u2764\ufe0f"
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"
Q_DOT_ABOVE = "q\u0307"  # no precomposed form, so NFKC keeps two code points
SCRIPT_TAG = "<script>alert(1)</script>"


class Rejected:
    """Marks a table row whose input must be refused."""

    def __init__(self, mentions: str) -> None:
        self.mentions = mentions


TOO_LONG = Rejected(str(MAX_NAME_LENGTH))
NO_CONTROLS = Rejected("control characters")
NOTHING_VISIBLE = Rejected("no visible characters")

TABLE = [
    pytest.param("Ann", "Ann", id="plain-ascii"),
    pytest.param("  Ann Lee \t", "Ann Lee", id="ends-trimmed"),
    pytest.param("Ann \t\n\r  Lee", "Ann Lee", id="inner-tab-newline-cr-collapsed"),
    pytest.param("Ann\u2028\u2029Lee", "Ann Lee", id="line-separators-collapsed"),
    pytest.param("Ann\u3000Lee", "Ann Lee", id="ideographic-space-becomes-space"),
    pytest.param("Ann\u00a0Lee", "Ann Lee", id="no-break-space-becomes-space"),
    pytest.param("\uff21\uff22\uff23", "ABC", id="nfkc-fullwidth-letters"),
    pytest.param("\ufb01sh", "fish", id="nfkc-fi-ligature"),
    pytest.param("e\u0301", "\u00e9", id="nfkc-composes-accent"),
    pytest.param("An\u200bn", "Ann", id="zero-width-space-removed"),
    pytest.param("An\u2060n", "Ann", id="word-joiner-removed"),
    pytest.param("\ufeffAnn", "Ann", id="byte-order-mark-removed"),
    pytest.param("An\u00adn", "Ann", id="soft-hyphen-removed"),
    pytest.param("\u200eAnn\u200f", "Ann", id="lrm-rlm-removed"),
    pytest.param("\u202eAnn\u202c", "Ann", id="right-to-left-override-removed"),
    pytest.param("\u2066Ann\u2069 \u2067Lee\u2069", "Ann Lee", id="isolates-removed"),
    pytest.param("Ann\u061c", "Ann", id="arabic-letter-mark-removed"),
    pytest.param(" \u200b Ann \u200b ", "Ann", id="invisible-at-edges-trimmed"),
    pytest.param("e\u200b\u0301", "\u00e9", id="accent-recomposed-after-removal"),
    pytest.param("\u1100\u00ad\u1161", "\uac00", id="jamo-recomposed-after-removal"),
    pytest.param(WOMAN_TECHNOLOGIST, WOMAN_TECHNOLOGIST, id="zwj-sequence-kept"),
    pytest.param(f"Ann {FAMILY}", f"Ann {FAMILY}", id="family-zwj-sequence-kept"),
    pytest.param(SCOTLAND, SCOTLAND, id="subdivision-flag-kept"),
    pytest.param(FRANCE, FRANCE, id="regional-indicator-flag-kept"),
    pytest.param(RED_HEART, RED_HEART, id="variation-selector-kept"),
    pytest.param(THUMBS_UP_MEDIUM, THUMBS_UP_MEDIUM, id="skin-tone-kept"),
    pytest.param(
        "\U0001f469\U0001f3fd\u200d\U0001f4bb",
        "\U0001f469\U0001f3fd\u200d\U0001f4bb",
        id="zwj-after-skin-tone-kept",
    ),
    pytest.param(
        "\U0001f3f3\ufe0f\u200d\U0001f308",
        "\U0001f3f3\ufe0f\u200d\U0001f308",
        id="zwj-after-variation-selector-kept",
    ),
    pytest.param("A\u200dnn", "Ann", id="zwj-between-latin-letters-removed"),
    pytest.param(f"{WOMAN_TECHNOLOGIST}\u200d", WOMAN_TECHNOLOGIST, id="dangling-zwj"),
    pytest.param("Ann\U000e0041", "Ann", id="stray-tag-character-removed"),
    pytest.param("bob\u034f", "bob", id="combining-grapheme-joiner-removed"),
    pytest.param("bo\u3164b", "bob", id="hangul-filler-removed"),
    pytest.param("A\uffa0nn", "Ann", id="halfwidth-hangul-filler-removed"),
    pytest.param("bob\ufe0f", "bob", id="variation-selector-after-letter-removed"),
    pytest.param("Ann \ufe0e", "Ann", id="variation-selector-after-space-removed"),
    pytest.param("1\ufe0f\u20e3", "1\ufe0f\u20e3", id="keycap-kept"),
    pytest.param("\u845b\U000e0100", "\u845b\U000e0100", id="ideographic-variant-kept"),
    pytest.param("a\U000e0100", "a", id="ideographic-selector-after-letter-removed"),
    pytest.param("\u2269\ufe00", "\u2269\ufe00", id="math-variant-kept"),
    pytest.param("\u0645\u0631\u064a\u0645", "\u0645\u0631\u064a\u0645", id="arabic"),
    pytest.param("\u05d3\u05e0\u05d4", "\u05d3\u05e0\u05d4", id="hebrew"),
    pytest.param(SCRIPT_TAG, SCRIPT_TAG, id="html-script-tag-unchanged"),
    pytest.param("a\\b `c` {d} 100%", "a\\b `c` {d} 100%", id="punctuation-unchanged"),
    pytest.param('O\'Brien "Bob"', 'O\'Brien "Bob"', id="quotes-unchanged"),
    pytest.param("", Rejected("enter a name"), id="empty"),
    pytest.param(" \t\n\r ", NOTHING_VISIBLE, id="whitespace-only"),
    pytest.param("\u200b\u2060\ufeff\u200d", NOTHING_VISIBLE, id="invisible-only"),
    pytest.param("\u3164", NOTHING_VISIBLE, id="hangul-filler-only"),
    pytest.param("\u115f\u1160", NOTHING_VISIBLE, id="jamo-fillers-only"),
    pytest.param("Ann\x00", NO_CONTROLS, id="nul"),
    pytest.param("Ann\x07", NO_CONTROLS, id="bel"),
    pytest.param("Ann\x1b[31m", NO_CONTROLS, id="esc"),
    pytest.param("Ann\x0bLee", NO_CONTROLS, id="vertical-tab"),
    pytest.param("Ann\x0cLee", NO_CONTROLS, id="form-feed"),
    pytest.param("Ann\x1fLee", NO_CONTROLS, id="unit-separator"),
    pytest.param("Ann\x7f", NO_CONTROLS, id="del"),
    pytest.param("Ann\x85Lee", NO_CONTROLS, id="next-line-c1"),
    pytest.param("Ann\ud800", Rejected("broken character"), id="lone-surrogate"),
    pytest.param("a" * 32, "a" * 32, id="32-letters"),
    pytest.param(WOMAN_TECHNOLOGIST * 32, WOMAN_TECHNOLOGIST * 32, id="32-zwj-emoji"),
    pytest.param(Q_DOT_ABOVE * 32, Q_DOT_ABOVE * 32, id="32-combining-graphemes"),
    pytest.param("  " + "a" * 32 + "  ", "a" * 32, id="32-letters-after-trimming"),
    pytest.param("a" * 33, TOO_LONG, id="33-letters"),
    pytest.param(WOMAN_TECHNOLOGIST * 33, TOO_LONG, id="33-zwj-emoji"),
    pytest.param("a" * 1001, TOO_LONG, id="huge-payload"),
]


@pytest.mark.parametrize(("raw", "expected"), TABLE)
def test_name_table(raw: str, expected: str | Rejected) -> None:
    if isinstance(expected, Rejected):
        with pytest.raises(NameRejectedError, match=expected.mentions):
            clean_name(raw)
    else:
        assert clean_name(raw) == expected


def test_length_limit_counts_graphemes_not_code_points() -> None:
    assert len(WOMAN_TECHNOLOGIST * 32) == 96
    assert grapheme_length(WOMAN_TECHNOLOGIST * 32) == 32
    assert grapheme_length(Q_DOT_ABOVE * 32) == 32
    assert len(unicodedata.normalize("NFKC", Q_DOT_ABOVE * 32)) == 64


def test_script_tag_example_fits_the_limit() -> None:
    assert grapheme_length(SCRIPT_TAG) <= MAX_NAME_LENGTH


def test_too_long_message_mentions_limit_and_actual_length() -> None:
    with pytest.raises(NameRejectedError) as caught:
        clean_name("x" * 40)
    assert str(caught.value) == (
        "Names can be at most 32 characters long (this one has 40)."
    )


def test_rejection_is_a_value_error_with_message_attribute() -> None:
    with pytest.raises(ValueError) as caught:
        clean_name("")
    assert isinstance(caught.value, NameRejectedError)
    assert caught.value.message == str(caught.value) == "Please enter a name."


def test_zero_width_space_is_removed() -> None:
    assert clean_name("Bo\u200bb") == "Bob"


def test_woman_technologist_survives_whole() -> None:
    cleaned = clean_name(f"Ann {WOMAN_TECHNOLOGIST}")
    assert cleaned.endswith(WOMAN_TECHNOLOGIST)
    assert grapheme_length(cleaned) == 5


def test_scotland_flag_is_one_character() -> None:
    assert grapheme_length(clean_name(SCOTLAND)) == 1


def test_control_character_is_rejected_even_between_spaces() -> None:
    # U+001C is whitespace to Python; it must not be collapsed into a space.
    with pytest.raises(NameRejectedError, match="control characters"):
        clean_name("Ann \x1c Lee")


def test_same_user_regardless_of_case_and_spacing() -> None:
    keys = {user_key(clean_name(raw)) for raw in ["Ann", "ANN", "  ann "]}
    assert len(keys) == 1


def test_german_sharp_s_matches_double_s() -> None:
    assert user_key(clean_name("Straße")) == user_key(clean_name("STRASSE"))


def test_cyrillic_lookalike_is_a_different_user() -> None:
    latin, cyrillic = clean_name("anna"), clean_name("\u0430nn\u0430")
    assert latin != cyrillic
    assert user_key(latin) != user_key(cyrillic)


def test_display_form_keeps_case() -> None:
    assert clean_name("McAnn") == "McAnn"
    assert user_key("McAnn") == "mcann"


# Characters that stress the interplay of NFKC, invisible removal and whitespace.
TRICKY = [
    " ", "\t", "\n", "\r", "\u00a0", "\u2028", "\u3000", "\u1680",
    "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u2066",
    "\U000e0041", "\U000e007f", "\U0001f3f4", "\ufe0f", "\U0001f3fd",
    "\U0001f469", "\U0001f4bb", "\U0001f1eb", "e", "\u0301", "\u0323",
    "\u1100", "\u1161", "\uff21", "\ufb01", "\u2126", "\u0345", "a",
    "\u034f", "\u3164", "\uffa0", "\ufe0e", "\U000e0100", "\u845b", "1",
]  # fmt: skip

BLANK_LETTERS = "\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0"

names = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=60
)


@settings(max_examples=1000)
@given(names)
def test_clean_name_output_is_tidy_bounded_and_stable(raw: str) -> None:
    try:
        display = clean_name(raw)
    except NameRejectedError:
        return
    assert display == display.strip()
    assert "  " not in display
    assert all(ch == " " for ch in display if ch.isspace())
    assert not any(unicodedata.category(ch) == "Cc" for ch in display)
    assert not any(ch in BLANK_LETTERS for ch in display)
    assert not display.startswith(("\ufe0e", "\ufe0f"))
    assert 0 < grapheme_length(display) <= MAX_NAME_LENGTH
    assert clean_name(display) == display
