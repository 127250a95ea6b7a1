"""Parallel slots of the in-process llama.cpp server, on the real bundled model: generations
run at once up to the slots, the rest wait their turn, and a cancelled stream frees its slot."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from llamafarm.chat.providers.base import Generation, Message
from llamafarm.chat.providers.universal import BUNDLED, UniversalProvider
from llamafarm.config.models import ModelConfig
from llamafarm.shared import Shared

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    shared = Shared()
    yield shared
    shared.close()


def provider(shared: Shared, slots: int) -> UniversalProvider:
    # one thread: llama.cpp slows down most when more threads than free cores compete
    extra = {"n_parallel": slots, "n_ctx": 1024, "n_threads": 1}
    model = ModelConfig(name=f"slots{slots}", provider="universal", model=BUNDLED, extra_body=extra)
    return UniversalProvider(model, shared)


def ask(text: str, tokens: int, extra: dict[str, object]) -> Generation:
    # ignore_eos: the answer is exactly `tokens` long, whatever the model would say
    return Generation(
        messages=[Message("user", text)],
        max_tokens=tokens,
        extra={**extra, "ignore_eos": True},
    )


async def finishing_order(model: UniversalProvider) -> list[str]:
    """A long answer starts; once its first token is out a short one is asked: which ends
    first."""
    extra = model._config.extra_body.body()
    order: list[str] = []
    started = asyncio.Event()

    async def run(name: str, generation: Generation) -> None:
        async for _ in model.stream(generation):
            started.set()
        order.append(name)

    long = asyncio.create_task(run("long", ask("Tell me a long story.", 120, extra)))
    await started.wait()
    await run("short", ask("Say hi.", 4, extra))
    await long
    return order


def test_two_slots_answer_at_once_and_one_slot_queues() -> None:
    shared = Shared()
    try:
        # one slot: the short answer waits for the whole long one
        assert asyncio.run(finishing_order(provider(shared, 1))) == ["long", "short"]
        # two: it is served beside the long one and ends first
        assert asyncio.run(finishing_order(provider(shared, 2))) == ["short", "long"]
        assert {r.details["slots"] for r in shared.residents.loaded()} == {1, 2}
    finally:
        shared.close()


def decodes(model: UniversalProvider) -> int:
    with model._server(model._config.extra_body.body()) as server:
        metrics = server.server.handle_metrics()
    return int(re.search(r"^llamacpp:n_decode_total (\d+)", metrics, re.M).group(1))


def test_a_closed_stream_frees_its_slot_at_the_next_token(shared: Shared) -> None:
    model = provider(shared, 1)
    extra = model._config.extra_body.body()

    async def run() -> str:
        endless = model.stream(ask("Tell me a long story.", 900, extra))
        await anext(endless)
        await endless.aclose()  # returns once llama.cpp has let go of the slot
        return "".join([d.content async for d in model.stream(ask("Say hi.", 4, extra))])

    before = decodes(model)
    assert asyncio.run(run())
    # the 900-token answer stopped at its first tokens: far fewer decodes than it asked for
    assert decodes(model) - before < 100
