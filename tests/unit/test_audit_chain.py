"""The audit hash chain: a clean trail verifies; each kind of tampering is found at its line."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core.audit_chain import (
    GENESIS,
    ChainHead,
    Decision,
    Outcome,
    Problem,
    checkpoint_link,
    decision_link,
    decisions_between,
    from_header,
    from_unverified,
    record_hash,
    verify,
)
from gateway.core.envelope import HeaderFields, SigningIdentity
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.records import AuditHead
from gateway.core.registry import Agency, KeyUse, PublicKeyRecord, Registry, key_id_for

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
GATEWAY = "gateway"


@cache
def private_key(agency: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def signer(agency: str = GATEWAY) -> SigningIdentity:
    raw = private_key(agency).public_key().public_bytes_raw()
    return SigningIdentity(agency, key_id_for(agency, KeyUse.SIGN, raw), private_key(agency))


def registry(revoked: bool = False, with_gateway_key: bool = True) -> Registry:
    records = []
    for agency in (GATEWAY, "police"):
        if agency == GATEWAY and not with_gateway_key:
            continue
        identity = signer(agency)
        records.append(
            PublicKeyRecord(
                identity.key_id,
                agency,
                KeyUse.SIGN,
                private_key(agency).public_key().public_bytes_raw(),
                T0 - timedelta(days=1),
                T0 + timedelta(days=365),
                revoked_at=T0 + timedelta(days=30) if revoked and agency == GATEWAY else None,
                revocation_reason="laptop stolen" if revoked and agency == GATEWAY else None,
            )
        )
    agencies = [Agency(GATEWAY, "Gateway", "gateway"), Agency("police", "Police", "police")]
    return Registry.build(agencies, records)


def decision(n: int) -> Decision:
    return Decision(
        message_id=f"msg-{n}",
        correlation_id="CASE-1",
        sender="police",
        message_type="Referral",
        recipients=("hub", "health"),
        purpose="safeguarding-children",
        lawful_bases=("uk-gdpr-6-1-e", "dpa-2018-sch1-18"),
        header_sha256=f"{n:064x}",
        outcome=Outcome.REJECTED if n % 3 == 0 else Outcome.ROUTED,
        check="policy" if n % 3 == 0 else None,
        reason="no agreement allows it" if n % 3 == 0 else None,
        agreement_ids=() if n % 3 == 0 else ("isa-police-hub",),
    )


def build(decisions: int = 6, every: int = 3, start: ChainHead = GENESIS) -> list[str]:
    """``decisions`` records with a checkpoint after every ``every``, and one at the end."""
    lines, head = [], start
    for n in range(1, decisions + 1):
        link = decision_link(head, T0 + timedelta(hours=n), decision(n))
        lines.append(link.line.rstrip("\n"))
        head = link.head
        if n % every == 0 or n == decisions:
            link = checkpoint_link(head, T0 + timedelta(hours=n), signer())
            lines.append(link.line.rstrip("\n"))
            head = link.head
    return lines


def rechain(records: list[dict[str, Any]], resign: bool = False) -> list[str]:
    """What an attacker with write access can do: renumber and rehash everything."""
    lines, head = [], GENESIS
    for record in records:
        record = {**record, "seq": head.seq + 1, "prev": head.hash}
        if resign and record["kind"] == "checkpoint":
            record = json.loads(checkpoint_link(head, T0, signer()).line)
        record["hash"] = record_hash(record)
        lines.append(json.dumps(record))
        head = ChainHead(record["seq"], record["hash"])
    return lines


def check(lines: list[str], **kwargs: Any) -> tuple[int, Problem, str]:
    finding = verify(lines, kwargs.pop("reg", registry()), GATEWAY, **kwargs).finding
    assert finding is not None, "tampering went unnoticed"
    return finding.line, finding.problem, finding.detail


def changed(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "x"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, list):
        return [*value, "probation"]
    return value[:-1] + ("0" if value[-1:] != "0" else "1")


def test_a_clean_chain_verifies_with_its_counts() -> None:
    result = verify(build(7, 3), registry(), GATEWAY)
    assert result.finding is None
    assert (result.records, result.checkpoints) == (7, 3)


def test_an_empty_log_verifies() -> None:
    assert verify([], registry(), GATEWAY).finding is None


def test_editing_any_field_of_any_record_names_its_line() -> None:
    lines = build(4, 2)
    for index, line in enumerate(lines):
        for key, value in json.loads(line).items():
            tampered = list(lines)
            tampered[index] = json.dumps({**json.loads(line), key: changed(value)})
            number, problem, _ = check(tampered)
            assert (number, problem) == (index + 1, Problem.EDITED), (index, key)


def test_an_edit_with_its_own_hash_recomputed_breaks_the_next_link() -> None:
    lines = build(6, 3)
    record = json.loads(lines[1])
    record["recipients"] = ["probation"]
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record)
    number, problem, detail = check(lines)
    assert (number, problem) == (3, Problem.BROKEN)
    assert "line 2" in detail


def test_an_edit_with_the_whole_chain_rehashed_fails_the_next_checkpoint() -> None:
    records = [json.loads(line) for line in build(6, 3)]
    records[6]["outcome"] = "routed"  # line 7, a rejection made to look routed
    number, problem, detail = check(rechain(records))
    assert (number, problem) == (8, Problem.CHECKPOINT)
    assert "does not verify" in detail
    assert "records from line 5 on are unproven" in detail


@pytest.mark.parametrize("index", range(7))
def test_removing_any_record_but_the_last_names_the_line_after_the_gap(index: int) -> None:
    lines = build(6, 3)
    del lines[index]
    number, problem, detail = check(lines)
    assert (number, problem) == (index + 1, Problem.REMOVED)
    assert f"{index + 1} missing" in detail


def test_removing_the_closing_checkpoint_leaves_the_tail_unsigned() -> None:
    lines = build(6, 3)[:-1]
    assert check(lines)[:2] == (5, Problem.UNSIGNED)


@pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 2), (4, 5), (1, 6), (3, 7)])
def test_swapping_two_records_names_the_first_misplaced_line(first: int, second: int) -> None:
    lines = build(6, 3)
    lines[first], lines[second] = lines[second], lines[first]
    number, problem, detail = check(lines)
    assert (number, problem) == (first + 1, Problem.REORDERED)
    assert f"record {first + 1} is at line {second + 1}" in detail


def test_a_duplicated_record_is_out_of_order() -> None:
    lines = build(6, 3)
    lines.insert(3, lines[2])
    assert check(lines)[:2] == (4, Problem.REORDERED)


def test_a_record_appended_out_of_band_with_a_valid_hash_is_unsigned() -> None:
    lines = build(3, 3)
    last = json.loads(lines[-1])
    forged = decision_link(ChainHead(last["seq"], last["hash"]), T0, decision(9)).line
    lines.append(forged.rstrip("\n"))
    number, problem, detail = check(lines)
    assert (number, problem) == (5, Problem.UNSIGNED)
    assert "lines 5-5" in detail
    assert verify(lines, registry(), GATEWAY, open_tail=True).finding is None


def test_an_out_of_band_record_under_a_forged_checkpoint_fails_its_signature() -> None:
    lines = build(3, 3)
    last = json.loads(lines[-1])
    forged = decision_link(ChainHead(last["seq"], last["hash"]), T0, decision(9))
    impostor = SigningIdentity(GATEWAY, signer().key_id, Ed25519PrivateKey.generate())
    lines += [forged.line.rstrip("\n"), checkpoint_link(forged.head, T0, impostor).line.rstrip()]
    number, problem, detail = check(lines)
    assert (number, problem) == (6, Problem.CHECKPOINT)
    assert "records from line 5 on are unproven" in detail


def test_a_record_inserted_mid_chain_and_rehashed_fails_the_next_checkpoint() -> None:
    records = [json.loads(line) for line in build(6, 3)]
    records.insert(5, json.loads(decision_link(GENESIS, T0, decision(42)).line))
    assert check(rechain(records))[:2] == (9, Problem.CHECKPOINT)


def test_a_fully_rechained_log_verifies_only_with_the_gateways_private_key() -> None:
    """The limit of the guarantee, stated: whoever holds the gateway key can rewrite history."""
    records = [json.loads(line) for line in build(6, 3)]
    del records[1]
    assert verify(rechain(records, resign=True), registry(), GATEWAY).finding is None


def kept_head_of(lines: list[str]) -> AuditHead:
    """The head the store keeps after the file's last checkpoint."""
    last = json.loads(lines[-1])
    assert last["kind"] == "checkpoint"
    return AuditHead("state/audit.jsonl", last["seq"], last["hash"], T0)


def test_a_file_holding_the_kept_head_verifies_with_its_tail_after_it() -> None:
    lines = build(6, 3)  # checkpoints at records 4 and 8
    assert verify(lines, registry(), GATEWAY, kept=kept_head_of(lines)).finding is None
    kept_earlier = kept_head_of(lines[:4])  # the store's copy may lag a checkpoint behind
    assert verify(lines, registry(), GATEWAY, kept=kept_earlier).finding is None


def test_an_emptied_file_is_cut_short_naming_what_is_missing() -> None:
    kept = kept_head_of(build(6, 3))
    assert verify([], registry(), GATEWAY).finding is None  # the file alone cannot tell
    line, problem, detail = check([], kept=kept)
    assert (line, problem) == (1, Problem.CUT)
    assert detail == (
        f"the store's head is record 8 (hash {kept.hash}, kept at 2026-11-23T09:00:00.000000Z); "
        "the file is empty: records 1-8 missing"
    )


def test_a_file_cut_back_to_an_earlier_checkpoint_is_cut_short() -> None:
    lines = build(6, 3)
    earlier = lines[:4]
    assert verify(earlier, registry(), GATEWAY).finding is None  # signed to its last line
    line, problem, detail = check(earlier, kept=kept_head_of(lines))
    assert (line, problem) == (5, Problem.CUT)
    assert detail.endswith("; the file ends at record 4: records 5-8 are missing")
    assert check(earlier, kept=kept_head_of(lines), open_tail=True)[1] is Problem.CUT


def test_a_file_cut_mid_line_is_cut_short_rather_than_merely_malformed() -> None:
    lines = build(6, 3)
    torn = [*lines[:5], lines[5][:40]]
    assert check(torn)[1] is Problem.MALFORMED
    line, problem, detail = check(torn, kept=kept_head_of(lines))
    assert (line, problem) == (6, Problem.CUT)
    assert detail.endswith("ends at record 5 and a line cut short: records 6-8 are missing")


def test_a_chain_rewritten_by_the_key_holder_no_longer_matches_the_kept_head() -> None:
    """What the kept head adds to the signatures: history up to it cannot be rewritten."""
    lines = build(6, 3)
    records = [json.loads(line) for line in lines]
    records[0] = {**records[0], "outcome": "rejected"}
    forged = rechain(records, resign=True)
    assert verify(forged, registry(), GATEWAY).finding is None
    line, problem, detail = check(forged, kept=kept_head_of(lines))
    assert (line, problem) == (8, Problem.REWRITTEN)
    assert "record 8 is not the one the store kept" in detail


def test_an_edit_is_named_at_its_line_before_the_kept_head_is_compared() -> None:
    lines = build(6, 3)
    record = json.loads(lines[1])
    lines[1] = json.dumps({**record, "sender": "health"})
    assert check(lines, kept=kept_head_of(build(6, 3)))[:2] == (2, Problem.EDITED)


@pytest.mark.parametrize(
    ("reg", "expected"),
    [
        (registry(revoked=True), "is revoked (laptop stolen)"),
        (registry(with_gateway_key=False), "unknown key id"),
    ],
)
def test_a_checkpoint_under_a_revoked_or_unknown_key_fails(reg: Registry, expected: str) -> None:
    number, problem, detail = check(build(3, 3), reg=reg)
    assert (number, problem) == (4, Problem.CHECKPOINT)
    assert expected in detail


def test_a_checkpoint_signed_by_another_agency_fails() -> None:
    link = decision_link(GENESIS, T0, decision(1))
    lines = [link.line, checkpoint_link(link.head, T0, signer("police")).line]
    assert "not the gateway principal" in check(lines)[2]


def test_a_line_that_is_not_a_record_is_malformed() -> None:
    lines = build(3, 3)
    lines[1] = '{"seq": 2, "kind": "decision"'
    assert check(lines)[:2] == (2, Problem.MALFORMED)


def test_export_selects_decisions_by_utc_day_in_field_order() -> None:
    lines = build(30, 10)  # hourly from T0 09:00, so days 23, 24 and 25 Nov
    rows = decisions_between(lines, date(2026, 11, 24), date(2026, 11, 24))
    assert [row["message_id"] for row in rows] == [f"msg-{n}" for n in range(15, 31)]
    assert all(row["at"].startswith("2026-11-24T") for row in rows)
    assert list(rows[0]) == [
        "seq",
        "at",
        "message_id",
        "correlation_id",
        "sender",
        "message_type",
        "recipients",
        "purpose",
        "lawful_bases",
        "header_sha256",
        "outcome",
        "check",
        "reason",
        "agreement_ids",
        "refers_to",
        "operator",
        "hash",
    ]


def test_records_carry_utc_times_and_refuse_naive_ones() -> None:
    link = decision_link(GENESIS, T0.astimezone(), decision(1))
    assert json.loads(link.line)["at"] == "2026-11-23T09:00:00.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        decision_link(GENESIS, T0.replace(tzinfo=None), decision(1))


def test_a_decision_from_a_header_takes_its_facts_and_the_routed_recipients() -> None:
    fields = HeaderFields(
        message_id="m-1",
        correlation_id="CASE-1",
        message_type="InformationRequest",
        sender="hub",
        recipients=("health", "probation"),
        created_at=T0,
        purpose="safeguarding-children",
        lawful_bases=("uk-gdpr-6-1-e",),
    )
    made = from_header(fields, "ab" * 32, Outcome.ROUTED, agreement_ids=("isa-1",))
    assert (made.sender, made.recipients, made.purpose) == (
        "hub",
        ("health", "probation"),
        "safeguarding-children",
    )
    assert from_header(fields, "ab" * 32, Outcome.ROUTED, recipients=("health",)).recipients == (
        "health",
    )


def test_an_unverified_message_contributes_only_id_shaped_claims() -> None:
    claimed = ClaimedFacts("Jane Smith 2015-03-12", "CASE-1", "police", "Referral")
    made = from_unverified(claimed, "signature", "bad signature")
    assert (made.message_id, made.correlation_id, made.sender) == (None, "CASE-1", "police")
    assert from_unverified(None, "undecodable", "no header").message_id is None
