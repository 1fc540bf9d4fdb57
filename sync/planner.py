"""The sync agent's plans, pure: which waiting records go in the next upload batch, and how
long to wait before trying a failed job again. The agent (`sync.agent.jobs`) applies them."""

from collections.abc import Callable, Iterable

from sync.protocol import MAX_BATCH_BYTES, MAX_BATCH_RECORDS


def plan_batch(
    rows: Iterable[tuple[int, str]],
    *,
    max_records: int = MAX_BATCH_RECORDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[tuple[int, str]]:
    """The first rows (seq, record JSON) that fit one batch, in order. A single record larger
    than `max_bytes` still goes, alone: a record must never block the ones after it."""
    batch: list[tuple[int, str]] = []
    size = 0
    for seq, text in rows:
        length = len(text.encode()) + 1
        if batch and (len(batch) >= max_records or size + length > max_bytes):
            break
        batch.append((seq, text))
        size += length
    return batch


def backoff_delay(
    attempt: int, random: Callable[[], float], *, base: float = 30.0, cap: float = 3600.0
) -> float:
    """Seconds to wait before retrying after `attempt` consecutive failures (1, 2, …):
    exponential growth up to `cap`, jittered between half and all of it by `random()` in
    [0, 1), so that a county's devices coming back online together do not call at once."""
    if attempt < 1:
        return 0.0
    ceiling = min(cap, base * 2 ** min(attempt - 1, 32))
    return ceiling / 2 + random() * ceiling / 2
