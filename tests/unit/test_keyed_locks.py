"""Messages of one case run one at a time in arrival order; other cases are not held up."""

import asyncio

import pytest

from gateway.infra.keyed_locks import KeyedLocks

pytestmark = pytest.mark.unit


async def test_one_case_is_serialised_in_arrival_order_and_others_overlap() -> None:
    locks = KeyedLocks()
    events: list[str] = []
    release = asyncio.Event()

    async def work(case: str, name: str, wait: bool) -> None:
        async with locks.hold(case):
            events.append(f"start {name}")
            if wait:
                await release.wait()
            events.append(f"end {name}")

    first = asyncio.create_task(work("A", "a1", wait=True))
    second = asyncio.create_task(work("A", "a2", wait=False))
    other = asyncio.create_task(work("B", "b1", wait=False))
    await asyncio.sleep(0.01)
    assert events == ["start a1", "start b1", "end b1"]  # B ran while A was held
    release.set()
    await asyncio.gather(first, second, other)
    assert events[3:] == ["end a1", "start a2", "end a2"]
    assert len(locks) == 0  # nothing kept once nobody holds or waits
