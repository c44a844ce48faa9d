"""200 concurrent streams stopped at random moments: every upstream closes, nothing leaks."""

import random

import trio

from tests.helpers import Stack, live_tasks, open_fds, wait_for_baseline
from trioproxy.conformance import RawClient, StopKind, chat_body, request_bytes

STREAMS = 200
BOUND_MS = 1000.0  # generous: the storm's speed goal lives in benchmarks/


async def test_storm_of_200_stops(stack: Stack) -> None:
    rng = random.Random(2026)
    tasks, fds = live_tasks(), open_fds()
    stopped_at: dict[str, float] = {}

    async def one(i: int) -> None:
        sim_id = f"storm-{i}"
        request = request_bytes(
            "POST",
            "/v1/chat/completions",
            chat_body(True),
            {
                "x-sim-id": sim_id,
                "x-sim-tokens": "1000000",
                "x-sim-interval": "0.1",
                "x-sim-headers-delay": rng.choice(["0", "0.05", "600"]),
            },
        )
        client = await RawClient.connect(stack.host, stack.port)
        await client.send(request)
        # Stop at a random moment once the upstream has the request: 200
        # connections opened at once take a few hundred ms to set up in this
        # one process (client, proxy and upstream share it).
        await stack.sim.wait_started(sim_id)
        await trio.sleep(rng.uniform(0.0, 0.5))
        stopped_at[sim_id] = client.stop(rng.choice(list(StopKind)))
        client.close()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(STREAMS):
                nursery.start_soon(one, i)
        fates = {f.sim_id: f for f in stack.sim.fates}
        for fate in fates.values():
            await fate.ended.wait()
        await wait_for_baseline(tasks, fds)

    assert all(f.outcome == "disconnected" for f in fates.values()), [
        (f.sim_id, f.outcome) for f in fates.values() if f.outcome != "disconnected"
    ]
    delays = sorted(
        (f.ended_at - stopped_at[f.sim_id]) * 1000 for f in fates.values() if f.ended_at is not None
    )
    assert len(delays) == len(fates) == STREAMS
    p99 = delays[int(len(delays) * 0.99) - 1]
    print(
        f"storm: {len(delays)} upstreams closed, p50 {delays[len(delays) // 2]:.2f} ms, "
        f"p99 {p99:.2f} ms, max {delays[-1]:.2f} ms"
    )
    assert delays[-1] < BOUND_MS
