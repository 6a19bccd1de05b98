"""Identifier check algorithms: the values in domain.md, public PNC examples, and properties."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.core.identifiers import (
    PNC_CHECK_LETTERS,
    identifier_problem,
    nhs_number_problem,
    pnc_check_letter,
    pnc_id_problem,
    upn_problem,
)

pytestmark = pytest.mark.unit

UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"


def nhs_check_digit(nine: str) -> int:
    """Oracle from domain.md: weights 10..2, check = 11 - (sum mod 11), 11 -> 0, 10 invalid."""
    check = 11 - sum(w * int(d) for w, d in zip(range(10, 1, -1), nine, strict=True)) % 11
    return 0 if check == 11 else check


@pytest.mark.parametrize("value", ["9434765870", "9434765919", "4010232137"])
def test_domain_valid_nhs_numbers_pass(value: str) -> None:
    assert nhs_number_problem(value) is None


def test_nhs_number_with_wrong_check_digit_is_named() -> None:
    assert nhs_number_problem("9434765871") == "NHS number 9434765871 fails its check digit"


@pytest.mark.parametrize("value", ["943476587", "94347658700", "943 476 5870", "943476587X", ""])
def test_nhs_number_that_is_not_ten_digits_is_refused(value: str) -> None:
    assert nhs_number_problem(value) == f"NHS number {value} is not 10 digits"


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_every_nhs_number_built_by_the_algorithm_passes(nine: str) -> None:
    check = nhs_check_digit(nine)
    assume(check != 10)
    assert nhs_number_problem(f"{nine}{check}") is None


@given(st.text(alphabet="0123456789", min_size=8, max_size=8))
def test_nine_digits_whose_check_would_be_ten_have_no_valid_number(eight: str) -> None:
    # Pick the ninth digit (weight 2, inverse 6 mod 11) so the weighted sum is 1 mod 11.
    partial = sum(w * int(d) for w, d in zip(range(10, 2, -1), eight, strict=True))
    ninth = (1 - partial) * 6 % 11
    assume(ninth < 10)
    nine = f"{eight}{ninth}"
    assert nhs_check_digit(nine) == 10
    assert all(nhs_number_problem(f"{nine}{d}") is not None for d in range(10))


@given(
    st.text(alphabet="0123456789", min_size=9, max_size=9),
    st.integers(0, 9),
    st.integers(1, 9),
)
def test_changing_any_one_nhs_digit_is_detected(nine: str, position: int, delta: int) -> None:
    check = nhs_check_digit(nine)
    assume(check != 10)
    digits = list(f"{nine}{check}")
    digits[position] = str((int(digits[position]) + delta) % 10)
    assert nhs_number_problem("".join(digits)) is not None


def test_domain_valid_upn_passes() -> None:
    assert upn_problem("B801200005001") is None


def test_upn_with_wrong_check_letter_is_named() -> None:
    assert upn_problem("A801200005001") == "UPN A801200005001 fails its check letter"


def test_upn_with_unknown_local_authority_is_named() -> None:
    assert upn_problem("E000200005001") == (
        "UPN E000200005001 has an unknown local authority number 000"
    )


@pytest.mark.parametrize(
    "value", ["B80120000500", "b801200005001", "B8012000A5001", "801200005001B"]
)
def test_upn_in_the_wrong_shape_is_refused(value: str) -> None:
    assert "is not a check letter followed by 12 characters" in str(upn_problem(value))


def upn_check_letter(body: str) -> str:
    """Oracle from domain.md: weights 2..13 on characters 2-13, sum mod 23."""
    return UPN_LETTERS[sum(w * int(c) for w, c in zip(range(2, 14), body, strict=True)) % 23]


upn_bodies = st.builds(
    lambda la, rest: f"{la}{rest}",
    st.sampled_from(["201", "330", "801", "938"]),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)


@given(upn_bodies)
def test_every_upn_built_by_the_algorithm_passes(body: str) -> None:
    assert upn_problem(upn_check_letter(body) + body) is None


@given(upn_bodies, st.integers(3, 11), st.integers(1, 9))
def test_changing_one_upn_digit_outside_the_la_is_detected(
    body: str, position: int, delta: int
) -> None:
    digits = list(body)
    digits[position] = str((int(digits[position]) + delta) % 10)
    assert upn_problem(upn_check_letter(body) + "".join(digits)) is not None


# Public examples from the Ministry of Justice person-record service's tests,
# which agree with the algorithm in domain.md.
@pytest.mark.parametrize(
    "value",
    ["2001/0171310W", "2011/0275516Q", "2008/0056560Z", "2003/0062845E", "1981/0154257C"],
)
def test_public_pnc_examples_pass(value: str) -> None:
    assert pnc_id_problem(value) is None


def test_pnc_serial_shorter_than_seven_digits_is_zero_padded() -> None:
    assert pnc_id_problem("2008/56560Z") is None


def test_pnc_with_wrong_check_letter_is_named() -> None:
    assert pnc_id_problem("2015/1234567A") == "PNC ID 2015/1234567A fails its check letter"


@pytest.mark.parametrize(
    "value", ["20151234567Y", "15/1234567Y", "2015/12345678Y", "2015/1234567y", "2015/Y"]
)
def test_pnc_in_the_wrong_shape_is_refused(value: str) -> None:
    assert pnc_id_problem(value) == f"PNC ID {value} is not in the form YYYY/NNNNNNNL"


@given(st.integers(1900, 2099), st.integers(0, 9_999_999))
def test_every_pnc_id_built_by_the_algorithm_passes_and_no_other_letter_does(
    year: int, serial: int
) -> None:
    letter = pnc_check_letter(str(year), f"{serial:07d}")
    assert pnc_id_problem(f"{year}/{serial:07d}{letter}") is None
    for other in PNC_CHECK_LETTERS.replace(letter, ""):
        assert pnc_id_problem(f"{year}/{serial:07d}{other}") is not None


@given(st.integers(1900, 2099), st.integers(0, 9_999_999), st.integers(2, 10), st.integers(1, 9))
def test_changing_one_pnc_digit_after_the_century_is_detected(
    year: int, serial: int, position: int, delta: int
) -> None:
    value = f"{year}{serial:07d}"
    letter = pnc_check_letter(value[:4], value[4:])
    digits = list(value)
    digits[position] = str((int(digits[position]) + delta) % 10)
    changed = "".join(digits)
    assert pnc_id_problem(f"{changed[:4]}/{changed[4:]}{letter}") is not None


def test_local_identifier_needs_its_system() -> None:
    assert identifier_problem("local", "PUP-1", "School MIS") is None
    assert identifier_problem("local", "PUP-1") == (
        "local identifier PUP-1 has no system attribute naming the issuing system"
    )


def test_national_identifier_must_not_name_a_system() -> None:
    assert identifier_problem("nhs-number", "9434765870", "PAS") == (
        "identifier of scheme nhs-number must not carry a system attribute"
    )


def test_unknown_scheme_is_refused() -> None:
    assert identifier_problem("ni-number", "QQ123456C") == "unknown identifier scheme 'ni-number'"


def test_identifier_problem_passes_a_good_value_and_names_a_bad_ones_fault() -> None:
    assert identifier_problem("pnc-id", "2015/1234567Y") is None
    problem = identifier_problem("nhs-number", "9434765871")
    assert problem == "NHS number 9434765871 fails its check digit"
