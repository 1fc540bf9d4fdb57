"""What the hub does with an uploaded batch of ledger records. Pure: `plan_ingest` decides,
the upload use case (`sync.hub.services.uploads.ingest`) applies its plan in one
transaction.

The hub keeps, per device, the contiguous verified prefix of its ledger (the
acknowledged high-water mark `head_seq` and the hash there) and, beyond a gap, records
it holds until the gap is filled. A record already held at its seq is a duplicate when
its hash is the one held (a replayed batch changes nothing), and an alarm when it is a
different, self-consistent record (the device's ledger went backwards) or a tampered one.

A record that is signed and chained but whose body is not well-formed
(`edge.domain.records.body_problem`) is accepted all the same, so that the device's chain
goes on, and flagged: the hub keeps it as evidence and never computes with it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.domain.ledger import self_consistency_problem
from edge.domain.records import body_problem

MAX_SEQ = 2**63 - 1  # what a 64-bit column holds
# Records a device may have held beyond a gap; past it the records are refused (and the
# device sends them again once the gap is filled).
MAX_HELD_RECORDS = 10_000


@dataclass(frozen=True)
class Refusal:
    seq: int | None
    code: str
    detail: str


@dataclass
class IngestPlan:
    accepted: list[dict] = field(default_factory=list)  # contiguous after the head, in order
    hold: list[dict] = field(default_factory=list)  # beyond a gap: keep until it is filled
    release: list[int] = field(default_factory=list)  # held seqs now accepted or dropped
    duplicates: int = 0
    refusals: list[Refusal] = field(default_factory=list)  # each also raises an alarm
    malformed: list[Refusal] = field(default_factory=list)  # accepted, flagged, alarmed
    head_seq: int = 0
    head_hash: str = ""

    @property
    def alarms(self) -> list[Refusal]:
        return self.refusals + self.malformed


def _shape_problem(record: dict[str, Any], device_id: str) -> tuple[str, str] | None:
    seq = record.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        shown = repr(seq) if len(repr(seq)) <= 30 else repr(seq)[:27] + "..."
        return "RECORD_MALFORMED", f"seq {shown} is not a whole number from 1 to 2^63 - 1"
    if record.get("device_id") != device_id:
        return "RECORD_FOREIGN", f"seq {seq} belongs to {record.get('device_id')!r}"
    if not isinstance(record.get("kind"), str) or not isinstance(record.get("body"), dict):
        return "RECORD_MALFORMED", f"seq {seq} lacks a kind or a body"
    if not isinstance(record.get("hash"), str) or not isinstance(record.get("prev_hash"), str):
        return "RECORD_MALFORMED", f"seq {seq} lacks its hash or prev_hash"
    return None


def plan_ingest(
    *,
    device_id: str,
    public_key: Ed25519PublicKey,
    head_seq: int,
    head_hash: str,
    batch: list[object],
    stored_hashes: Mapping[int, str],
    held: Mapping[int, dict],
    max_held: int = MAX_HELD_RECORDS,
) -> IngestPlan:
    """Decide what to store, hold, ignore and refuse.

    `head_seq`/`head_hash`: the verified prefix the hub holds (0 and the genesis hash for
    a new device); `stored_hashes`: the hashes held at the batch's seqs up to the head;
    `held`: the records held beyond a gap; `max_held`: how many may be held."""
    plan = IngestPlan(head_seq=head_seq, head_hash=head_hash)
    candidates: dict[int, dict[str, Any]] = {}
    for record in batch:
        if not isinstance(record, dict):
            plan.refusals.append(Refusal(None, "RECORD_MALFORMED", "not a JSON object"))
            continue
        shape = _shape_problem(record, device_id)
        if shape is not None:
            seq = record.get("seq")
            # Only a seq a database column holds is named (in the alarm too).
            named = seq if type(seq) is int and 1 <= seq <= MAX_SEQ else None
            plan.refusals.append(Refusal(named, *shape))
            continue
        seq = record["seq"]
        if seq <= head_seq:
            if record["hash"] == stored_hashes.get(seq):
                if self_consistency_problem(record, public_key) is None:
                    plan.duplicates += 1
                else:
                    plan.refusals.append(Refusal(seq, "RECORD_INVALID", "a replay altered"))
                continue
            problem = self_consistency_problem(record, public_key)
            if problem is None:
                plan.refusals.append(
                    Refusal(
                        seq,
                        "LEDGER_WENT_BACKWARDS",
                        f"a different record at seq {seq}, which the hub already holds",
                    ),
                )
            else:
                plan.refusals.append(Refusal(seq, "RECORD_INVALID", f"seq {seq}: {problem}"))
            continue
        if seq in candidates and candidates[seq]["hash"] != record["hash"]:
            plan.refusals.append(Refusal(seq, "RECORD_MALFORMED", f"seq {seq} twice in a batch"))
            continue
        candidates[seq] = record

    pending = {**held, **candidates}
    for seq in sorted(held):
        if seq in candidates and candidates[seq]["hash"] != held[seq]["hash"]:
            plan.refusals.append(
                Refusal(seq, "LEDGER_WENT_BACKWARDS", f"seq {seq} changed while held")
            )
            plan.release.append(seq)

    # Walk the chain from the head through everything now contiguous.
    seq, prev_hash = head_seq + 1, head_hash
    while seq in pending:
        record = pending.pop(seq)
        problem = self_consistency_problem(record, public_key)
        code = "RECORD_INVALID"
        if problem is None and record["prev_hash"] != prev_hash:
            code, problem = "CHAIN_BROKEN", "prev_hash does not match the previous record's hash"
        if problem is not None:
            plan.refusals.append(Refusal(seq, code, f"seq {seq}: {problem}"))
            if seq in held:
                plan.release.append(seq)
            break
        plan.accepted.append(record)
        malformed = body_problem(record["kind"], record["body"])
        if malformed is not None:
            plan.malformed.append(Refusal(seq, "BODY_MALFORMED", f"seq {seq}: {malformed}"))
        if seq in held and seq not in plan.release:
            plan.release.append(seq)
        prev_hash = record["hash"]
        seq += 1
    plan.head_seq, plan.head_hash = seq - 1, prev_hash

    # Beyond a gap (or a refused record): hold what is signed by the device, up to
    # `max_held` records in all, the nearest the gap first.
    released = set(plan.release)
    room = max_held - len([seq for seq in held if seq not in released])
    for seq, record in sorted(pending.items()):
        if seq in held and held[seq]["hash"] == record["hash"]:
            continue  # held already
        problem = self_consistency_problem(record, public_key)
        if problem is not None:
            plan.refusals.append(Refusal(seq, "RECORD_INVALID", f"seq {seq}: {problem}"))
        elif room <= 0:
            plan.refusals.append(
                Refusal(seq, "HELD_LIMIT", f"seq {seq}: {max_held} records held beyond a gap")
            )
        else:
            plan.hold.append(record)
            room -= 1
    return plan
