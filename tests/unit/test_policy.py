"""Sharing policy: deny by default, each check, the date boundaries, the reason a sender reads."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.sharing import (
    Agreement,
    Allowed,
    Denied,
    decide,
    upn_allowed,
)
from gateway.core.vocabulary import agency_kinds

pytestmark = pytest.mark.unit

ISA = Agreement(
    id="isa-01",
    senders=frozenset({"hub"}),
    recipients=frozenset({"health", "police"}),
    message_types=frozenset({"InformationRequest"}),
    purposes=frozenset({"child-safeguarding"}),
    lawful_bases=frozenset({"uk-gdpr-6-1-e", "ca-2004-s11"}),
    valid_from=date(2025, 4, 1),
    valid_until=date(2026, 3, 31),
)
DAY = date(2025, 10, 1)
SHARE = {
    "sender": "hub",
    "recipient": "health",
    "message_type": "InformationRequest",
    "purpose": "child-safeguarding",
    "lawful_bases": ("uk-gdpr-6-1-e",),
    "on": DAY,
}


def ask(agreements: list[Agreement], **changes: object) -> Allowed | Denied:
    return decide(agreements, **{**SHARE, **changes})  # type: ignore[arg-type]


def test_a_share_the_agreement_covers_is_allowed() -> None:
    assert ask([ISA]) == Allowed("isa-01")
    assert ask([ISA], recipient="police", lawful_bases=("ca-2004-s11", "uk-gdpr-6-1-e")) == (
        Allowed("isa-01")
    )


def test_no_agreements_denies_everything() -> None:
    assert ask([]) == Denied("no agreement lets hub send InformationRequest to health")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sender": "police"}, "no agreement lets police send InformationRequest to health"),
        ({"recipient": "education"}, "no agreement lets hub send InformationRequest to education"),
        ({"message_type": "Referral"}, "no agreement lets hub send Referral to health"),
        (
            {"purpose": "crime-prevention"},
            "agreement isa-01 does not allow purpose crime-prevention",
        ),
        (
            {"lawful_bases": ("uk-gdpr-6-1-e", "cda-1998-s115")},
            "agreement isa-01 does not allow lawful basis cda-1998-s115",
        ),
        (
            {"lawful_bases": ("cda-1998-s115", "ca-1989-s47", "cda-1998-s115")},
            "agreement isa-01 does not allow lawful bases cda-1998-s115, ca-1989-s47",
        ),
        (
            {"lawful_bases": ()},
            "hub cited no lawful basis for sending InformationRequest to health",
        ),
        ({"on": date(2026, 4, 1)}, "agreement isa-01 expired on 2026-03-31"),
        ({"on": date(2025, 3, 31)}, "agreement isa-01 is not valid until 2025-04-01"),
    ],
)
def test_each_failed_check_is_named(change: dict[str, object], reason: str) -> None:
    assert ask([ISA], **change) == Denied(reason)


@pytest.mark.parametrize(
    ("day", "allowed"),
    [
        (ISA.valid_from - timedelta(days=1), False),
        (ISA.valid_from, True),
        (ISA.valid_until, True),
        (ISA.valid_until + timedelta(days=1), False),
    ],
)
def test_validity_dates_are_inclusive(day: date, allowed: bool) -> None:
    assert isinstance(ask([ISA], on=day), Allowed) is allowed


def test_any_agreement_that_allows_wins_over_those_that_do_not() -> None:
    expired = replace(ISA, id="isa-00", valid_until=date(2025, 3, 31), valid_from=date(2024, 4, 1))
    assert ask([expired, ISA]) == Allowed("isa-01")
    assert ask([ISA, replace(ISA, id="isa-02")]) == Allowed("isa-01")


def test_the_reason_comes_from_the_nearest_agreement() -> None:
    # isa-a fails two checks, isa-b only its dates: the sender should hear about isa-b.
    far = replace(ISA, id="isa-a", purposes=frozenset({"adult-safeguarding"}), valid_until=DAY)
    near = replace(ISA, id="isa-b", valid_until=date(2025, 9, 30))
    assert ask([far, near], on=DAY + timedelta(days=1)) == Denied(
        "agreement isa-b expired on 2025-09-30"
    )


def test_system_messages_are_never_allowed_by_agreements() -> None:
    for message_type in ("DeliveryReceipt", "NonDelivery", "Escalation"):
        assert isinstance(ask([ISA], message_type=message_type), Denied)


KINDS = sorted(agency_kinds())


@pytest.mark.parametrize(("sender", "recipient"), list(itertools.product(KINDS, KINDS)))
def test_upn_travels_only_to_or_from_education(sender: str, recipient: str) -> None:
    assert upn_allowed(sender, recipient) is ("education" in (sender, recipient))


AGENCIES = ("hub", "police", "health")
TYPES = ("Referral", "InformationRequest")
PURPOSES = ("child-safeguarding", "crime-prevention")
BASES = ("uk-gdpr-6-1-e", "ca-1989-s47", "cda-1998-s115")
DAYS = st.dates(min_value=date(2025, 1, 1), max_value=date(2025, 1, 10))


def subsets(items: tuple[str, ...]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(items))


agreements = st.builds(
    Agreement,
    id=st.sampled_from(("a", "b", "c")),
    senders=subsets(AGENCIES),
    recipients=subsets(AGENCIES),
    message_types=subsets(TYPES),
    purposes=subsets(PURPOSES),
    lawful_bases=subsets(BASES),
    valid_from=DAYS,
    valid_until=DAYS,
)


@given(
    st.lists(agreements, max_size=4),
    st.sampled_from(AGENCIES),
    st.sampled_from(AGENCIES),
    st.sampled_from(TYPES),
    st.sampled_from(PURPOSES),
    st.lists(st.sampled_from(BASES), min_size=1, max_size=3).map(tuple),
    DAYS,
)
def test_allowed_exactly_when_one_agreement_permits_everything(
    isas: list[Agreement],
    sender: str,
    recipient: str,
    message_type: str,
    purpose: str,
    bases: tuple[str, ...],
    on: date,
) -> None:
    permitting = sorted(
        a.id
        for a in isas
        if sender in a.senders
        and recipient in a.recipients
        and message_type in a.message_types
        and purpose in a.purposes
        and set(bases) <= a.lawful_bases
        and a.valid_from <= on <= a.valid_until
    )
    decision = decide(isas, sender, recipient, message_type, purpose, bases, on)
    if permitting:
        assert decision == Allowed(permitting[0])
    else:
        assert isinstance(decision, Denied)
