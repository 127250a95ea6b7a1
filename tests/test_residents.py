"""Residents: loaded once per key, unloaded when idle past the TTL, and held under a memory cap
(the least recently used idle model goes first; models in use or kept loaded never)."""

from __future__ import annotations

import threading
import weakref

import pytest

from llamafarm.errors import Unavailable
from llamafarm.residents import Residents


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Model:
    """Something loaded; a weak reference to it tells when the last user let go."""


def load(residents: Residents, key: str, size: int = 10, *, pinned: bool = False) -> Model:
    with residents.use(key, Model, name=key, path=f"/m/{key}", size=size, pinned=pinned) as item:
        return item


def names(residents: Residents) -> list[str]:
    return [r.name for r in residents.loaded()]


def test_a_model_loads_once_and_is_shared() -> None:
    residents, made = Residents(), []

    def make() -> Model:
        made.append(1)
        return Model()

    barrier = threading.Barrier(4)
    seen: list[Model] = []

    def user() -> None:
        barrier.wait()
        with residents.use("a", make, name="a", path="/a", size=1) as item:
            seen.append(item)

    threads = [threading.Thread(target=user) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(made) == 1 and len({id(item) for item in seen}) == 1
    (info,) = residents.loaded()
    assert (info.name, info.path, info.size_bytes, info.in_use) == ("a", "/a", 1, 0)


def test_a_failed_load_keeps_nothing() -> None:
    residents = Residents()

    def broken() -> Model:
        raise RuntimeError("bad file")

    with pytest.raises(RuntimeError), residents.use("a", broken, name="a", path="/a", size=1):
        pass
    assert residents.loaded() == []
    assert load(residents, "a")  # a later try loads it


def test_idle_models_unload_after_the_ttl_and_are_freed() -> None:
    clock = Clock()
    residents = Residents(idle_ttl=60, clock=clock)
    gone = weakref.ref(load(residents, "idle"))
    load(residents, "kept", pinned=True)
    with residents.use("busy", Model, name="busy", path="/b", size=1):
        clock.now += 59
        assert residents.sweep() == 0
        clock.now += 1
        assert residents.sweep() == 1  # idle; busy is in use and kept is pinned
        assert names(residents) == ["kept", "busy"]
        assert gone() is None  # the process let go of it
    clock.now += 60
    assert residents.sweep() == 1 and names(residents) == ["kept"]
    residents.close()


def test_using_a_model_restarts_its_idle_time() -> None:
    clock = Clock()
    residents = Residents(idle_ttl=60, clock=clock)
    load(residents, "a")
    clock.now += 50
    load(residents, "a")
    clock.now += 50
    assert residents.sweep() == 0
    assert residents.loaded()[0].idle_seconds == 50
    residents.close()


def test_no_ttl_keeps_every_model() -> None:
    clock = Clock()
    residents = Residents(clock=clock)
    load(residents, "a")
    clock.now += 1e9
    assert residents.sweep() == 0 and names(residents) == ["a"]


def test_the_memory_cap_unloads_the_least_recently_used_idle_model() -> None:
    clock = Clock()
    residents = Residents(memory_bytes=25, clock=clock)
    load(residents, "a")
    clock.now += 1
    load(residents, "b")
    clock.now += 1
    load(residents, "a")  # a is now the more recent
    clock.now += 1
    load(residents, "c")
    assert names(residents) == ["a", "c"]


def test_a_model_in_use_or_kept_loaded_is_never_evicted() -> None:
    residents = Residents(memory_bytes=25)
    load(residents, "kept", pinned=True)
    with residents.use("busy", Model, name="busy", path="/b", size=10):
        with pytest.raises(Unavailable, match=r"busy \(10B, in use\)") as refused:
            load(residents, "new")
        assert "kept (10B, kept loaded)" in refused.value.detail
        assert names(residents) == ["kept", "busy"]  # refusing unloads nothing
    assert load(residents, "new") and names(residents) == ["kept", "new"]


def test_a_model_bigger_than_the_cap_is_refused_with_both_numbers() -> None:
    residents = Residents(memory_bytes=25)
    with pytest.raises(Unavailable, match="needs about 30B, more than LF_MODEL_MEMORY_GB"):
        load(residents, "huge", size=30)


def test_the_sweeper_thread_unloads_idle_models() -> None:
    residents = Residents(idle_ttl=0.01)
    load(residents, "a")
    unloaded = threading.Event()
    for _ in range(200):  # the sweeper looks every 0.5 s at the most
        if not residents.loaded():
            unloaded.set()
            break
        threading.Event().wait(0.05)
    residents.close()
    assert unloaded.is_set()
