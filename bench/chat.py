"""Chat streaming latency: time to first token and tokens/s through a real server vs direct.

    .venv/bin/python bench/chat.py [--requests 30] [--universal-requests 12]

It starts `lf start` on a free port with a temporary data directory and, in a process of its own,
a loopback OpenAI-compatible server that streams a fixed answer (CHUNKS small chunks, all at once,
or `--pace-ms` apart like a real model).
For each provider it compares the same generation made two ways, one after the other (never at
the same time, so they do not compete for the CPUs), each warmed up first:

- `universal` (the bundled SmolLM2-135M in llama.cpp): "direct" streams from the provider in this
  process; "server" streams `POST .../chat/completions` of a project made from the `server`
  template (its own copy of the model, in the server's process).
- `openai` (the loopback server): "direct" streams `POST /v1/chat/completions` from it with httpx;
  "server" goes through a project whose model is `provider: openai` at that URL. The difference
  is the server's own overhead (target: <= 5 ms p50 on TTFT).

TTFT is the time from sending the request (or calling `stream()`) to the first chunk with
non-empty content; tok/s is the answer's tokens (`usage.completion_tokens`) after the first over
the time from the first content to the last, per request (the server joins text that is
already queued into one chunk, so chunks are not tokens). The paths alternate in rounds so that
any load from elsewhere falls on both alike: a round of direct requests, then a round through
the server, each round one request from each client thread at once (c=1: one thread; c=8:
eight, one httpx client each). `agg tok/s` is every token of a path over the summed wall time
of its rounds; `server CPU ms/req` is the CPU time the server process used during the server
path's rounds, per request. For the loopback model a line `8~` follows the one at 8 clients:
the same 8 clients, each sending its requests one after another on its own (`interleaved`).
`--providers slots` first times the cold start (from `lf start` to the first token of a first
request, which loads the bundled model) and the server's RSS with one model loaded and two,
then sends 8 clients at once to the bundled model served with 1 slot and with its default
slots (8), in alternating rounds, each answer exactly 64 tokens (`ignore_eos`): TTFT p50/p95
and aggregate tok/s of each, and their ratios.
Both paths send the model the same messages (the template's system prompt, which the server
adds from the project's prompts, and one user message), `max_tokens` 64, temperature 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import psutil
from harness import free_port, wait_until_up

NAMESPACE = "bench"
SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
"""The `server` template's system prompt as it renders without variables."""
QUESTION = "Name three uses of a river delta, one sentence each."
MAX_TOKENS = 64
CHUNKS = 64
WARMUP = 3
HEADERS = {"X-No-Session": "1"}
TIMEOUT = httpx.Timeout(120.0, connect=5.0)


@dataclass(frozen=True)
class Sample:
    ttft: float
    """Seconds to the first content chunk."""
    tokens: int
    rate: float
    """Tokens per second after the first."""


Measure = Callable[[httpx.Client], Sample]


def sample(started: float, stamps: list[float], tokens: int | None) -> Sample:
    """`stamps`: when each piece of content came; `tokens`: the usage the stream reported."""
    if not stamps:
        raise RuntimeError("the stream ended without any content")
    if tokens is None:
        raise RuntimeError("the stream reported no usage")
    span = stamps[-1] - stamps[0]
    return Sample(stamps[0] - started, tokens, (tokens - 1) / span if span else 0.0)


def stream_sse(http: httpx.Client, url: str, body: dict[str, Any]) -> Sample:
    """POST a streaming chat request; time each SSE frame that carries content."""
    stamps: list[float] = []
    tokens = None
    done = False
    started = time.perf_counter()
    with http.stream("POST", url, json=body, headers=HEADERS) as response:
        if response.is_error:
            raise RuntimeError(f"POST {url} {body} -> {response.status_code} {response.read()!r}")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            frame = json.loads(line[6:])
            if "error" in frame:
                raise RuntimeError(f"POST {url} {body} -> error frame {frame}")
            if frame.get("usage"):
                tokens = frame["usage"]["completion_tokens"]
            for choice in frame.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
    if not done:
        raise RuntimeError(f"POST {url}: the stream ended without `data: [DONE]`")
    return sample(started, stamps, tokens)


def rounds(
    paths: dict[str, Measure], clients: int, count: int, cpu: Callable[[], float]
) -> dict[str, tuple[list[Sample], float, float]]:
    """`count` rounds; in each, every path in turn gets one request from each of `clients`
    threads at once (one httpx client per thread, kept across rounds); a path starts only once
    the one before it has finished. Each path's samples, summed wall seconds, and the CPU
    seconds `cpu()` (the server process's) counted while it ran."""
    samples: dict[str, list[Sample]] = {path: [] for path in paths}
    walls = dict.fromkeys(paths, 0.0)
    cpus = dict.fromkeys(paths, 0.0)
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(timeout=TIMEOUT) as http:
            for _ in range(count):
                for path, measure in paths.items():
                    barrier.wait()
                    try:
                        samples[path].append(measure(http))
                    except Exception as exc:  # reported after the run; the others go on
                        errors.append(exc)
                    barrier.wait()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for _ in range(count):
        for path in paths:
            barrier.wait()
            started, used = time.perf_counter(), cpu()
            barrier.wait()
            walls[path] += time.perf_counter() - started
            cpus[path] += cpu() - used
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} of {clients * count * len(paths)} failed: {errors[0]}")
    return {path: (samples[path], walls[path], cpus[path]) for path in paths}


def interleaved(
    paths: dict[str, Measure], clients: int, count: int, cpu: Callable[[], float]
) -> tuple[dict[str, list[Sample]], float]:
    """`clients` threads started together, each sending `count` requests down every path in
    turn with no waiting for the others (a closed loop, as load generators run clients), so
    arrivals spread out as they would from independent clients; each thread starts with a
    different path, so about as many requests are on each path at any time. Each path's
    samples, and the CPU seconds `cpu()` counted over the whole run."""
    samples: dict[str, list[Sample]] = {path: [] for path in paths}
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)
    order = list(paths.items())

    def client(first: int) -> None:
        turn = order[first:] + order[:first]
        with httpx.Client(timeout=TIMEOUT) as http:
            barrier.wait()
            for _ in range(count):
                for path, measure in turn:
                    try:
                        samples[path].append(measure(http))
                    except Exception as exc:  # reported after the run; the others go on
                        errors.append(exc)

    threads = [threading.Thread(target=client, args=(i % len(order),)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    used = cpu()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} of {clients * count * len(paths)} failed: {errors[0]}")
    return samples, cpu() - used


# --- the loopback OpenAI-compatible server, run as `bench/chat.py --fake-openai` ---


class FakeOpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each small frame waits for the ACK of the last one
    frames: ClassVar[list[bytes]] = []
    pace: ClassVar[float] = 0.0
    """Seconds between two content frames (0: the whole answer at once)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._json({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if not body.get("stream"):  # the same answer, whole
            message = {"role": "assistant", "content": "".join(f" w{i}" for i in range(CHUNKS))}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            usage = {"prompt_tokens": 20, "completion_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}
            self._json(
                {
                    "id": "fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "fake",
                    "choices": [choice],
                    "usage": usage,
                }
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, frame in enumerate(self.frames):
            if self.pace and 1 < index < len(self.frames) - 1:
                time.sleep(self.pace)
            self.wfile.write(frame)
            self.wfile.flush()

    def _json(self, value: dict[str, Any]) -> None:
        payload = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve_fake_openai(pace: float) -> None:
    FakeOpenAI.pace = pace

    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        event = {"id": "fake", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
        data = f"data: {json.dumps({**event, 'choices': choices, **extra})}\n\n".encode()
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    usage = {"prompt_tokens": 20, "completion_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}
    FakeOpenAI.frames = [
        frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        *(
            frame([{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}])
            for i in range(CHUNKS)
        ),
        frame([{"index": 0, "delta": {}, "finish_reason": "length"}], usage=usage),
        b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n",
    ]
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    server.serve_forever()


# --- the llamafarm server ---


def make_project(http: httpx.Client, name: str, model: dict[str, Any] | None) -> str:
    """A project from the `server` template, its model replaced by `model` if given: its URL."""
    response = http.post(
        f"/v1/projects/{NAMESPACE}", json={"name": name, "config_template": "server"}
    )
    response.raise_for_status()
    base = f"/v1/projects/{NAMESPACE}/{name}"
    if model is not None:
        config = response.json()["project"]["config"]
        config["runtime"] = {"models": [model], "default_model": model["name"]}
        response = http.put(base, json={"config": config})
        if response.is_error:
            raise SystemExit(f"PUT {base}: {response.status_code} {response.text}")
    return f"{base}/chat/completions"


# --- slots: the bundled model with one slot vs its default ---


def rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


def slots(
    http: httpx.Client,
    process: psutil.Process,
    started: float,
    body: dict[str, Any],
    count: int,
    *,
    threads: int | None = None,
    busy: int = 0,
) -> None:
    """8 clients at once against the bundled model served with 1 slot and with its default
    slots, in alternating rounds (each answer exactly MAX_TOKENS long: `ignore_eos`); before
    that, the cold start (the server's start to the first token of the first request, which
    loads the model) and the server's RSS with one model loaded, then two."""
    model = {"name": "default", "provider": "universal", "model": "SmolLM2-135M-Instruct"}
    extra: dict[str, Any] = {"ignore_eos": True}
    if threads:
        extra["n_threads"] = threads
    default_url = make_project(http, "slots", {**model, "extra_body": extra})
    one_url = make_project(http, "oneslot", {**model, "extra_body": {**extra, "n_parallel": 1}})
    base = str(http.base_url).rstrip("/")
    before = rss_mb(process)
    first = stream_sse(http, f"{base}{default_url}", body)
    cold = time.perf_counter() - started
    one_model = rss_mb(process)
    stream_sse(http, f"{base}{one_url}", body)
    two_models = rss_mb(process)
    loaded = http.get("/v1/models").json()["loaded"]
    estimates = ", ".join(
        f"{m['slots']} slot(s) x {m['context']}: {m['memory_bytes'] / 2**20:.0f} MB" for m in loaded
    )
    print(
        f"slots: cold start {cold:.2f} s from `lf start` to the first token ({first.ttft:.2f} s "
        f"of it the first request, which loads the model); server RSS {before:.0f} MB with no "
        f"model, {one_model:.0f} MB with the default-slots model, {two_models:.0f} MB with the "
        f"1-slot one too (estimates: {estimates})"
    )
    paths = {
        "1 slot": lambda h: stream_sse(h, f"{base}{one_url}", body),
        "default": lambda h: stream_sse(h, f"{base}{default_url}", body),
    }
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        result = rounds(paths, 8, count, lambda: 0.0)
    finally:
        for burner in burners:
            burner.kill()
    if busy:
        print(f"({busy} other process(es) kept a CPU busy each meanwhile, like an ingestion)")
    print(f"{'slots':<8} {'n':>4} {'TTFT p50 ms':>12} {'p95 ms':>8} {'agg tok/s':>10}")
    figures = {}
    for name, (samples, wall, _) in result.items():
        figures[name] = (ms(samples, 95), sum(x.tokens for x in samples) / wall)
        print(
            f"{name:<8} {len(samples):>4} {ms(samples, 50):12.0f} {ms(samples, 95):8.0f} "
            f"{figures[name][1]:10.1f}"
        )
    (p95_one, agg_one), (p95_default, agg_default) = figures["1 slot"], figures["default"]
    print(
        f"default vs 1 slot: aggregate tok/s x{agg_default / agg_one:.2f}, "
        f"TTFT p95 x{p95_default / p95_one:.2f}",
        flush=True,
    )


# --- the comparison ---


def ms(samples: list[Sample], q: float) -> float:
    return float(np.percentile([s.ttft * 1000 for s in samples], q))


def compare(
    name: str,
    direct: Measure,
    server: Measure,
    plan: list[tuple[int, int]],
    cpu: Callable[[], float],
    *,
    spread: bool = False,
) -> None:
    """One line per plan entry `(clients, count)`: `count` rounds of all clients at once;
    with `spread`, for several clients, a second line (`8~`) with the clients interleaved."""
    paths = {"direct": direct, "server": server}
    rounds(paths, 1, WARMUP, cpu)
    for clients, count in plan:
        result = rounds(paths, clients, count, cpu)
        (d, d_wall, _), (s, s_wall, s_cpu) = result["direct"], result["server"]
        agg = f"{sum(x.tokens for x in d) / d_wall:8.0f} {sum(x.tokens for x in s) / s_wall:8.0f}"
        row(name, f"{clients}", d, s, agg, s_cpu)
        if clients > 1 and spread:
            samples, s_cpu = interleaved(paths, clients, count, cpu)
            row(
                name,
                f"{clients}~",
                samples["direct"],
                samples["server"],
                f"{'-':>8} {'-':>8}",
                s_cpu,
            )


def row(name: str, c: str, d: list[Sample], s: list[Sample], agg: str, s_cpu: float) -> None:
    rate_d = np.median([x.rate for x in d])
    rate_s = np.median([x.rate for x in s])
    print(
        f"{name:<9} {c:>2} {len(d):>4}  {ms(d, 50):7.1f} {ms(d, 95):7.1f}  "
        f"{ms(s, 50):7.1f} {ms(s, 95):7.1f}  {ms(s, 50) - ms(d, 50):+9.1f}  "
        f"{rate_d:8.0f} {rate_s:8.0f}  {agg}  {1000 * s_cpu / len(s):9.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fake-openai", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--requests", type=int, default=30, help="loopback model: requests at c=1 (c=8: 8 x N/3)"
    )
    parser.add_argument(
        "--universal-requests",
        type=int,
        default=12,
        help="built-in model: requests at c=1 (c=8: 8 x N/4)",
    )
    parser.add_argument(
        "--providers",
        default="openai,universal",
        help="which to compare, comma-separated: openai, universal, slots (the bundled model "
        "with 1 slot vs its default slots, cold start and RSS)",
    )
    parser.add_argument(
        "--slot-rounds", type=int, default=3, help="slots: rounds of 8 clients at once per setting"
    )
    parser.add_argument(
        "--slot-threads", type=int, help="slots: the model's n_threads (default: the server's)"
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="slots: processes that keep a CPU busy each during the rounds (an ingestion's load)",
    )
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="loopback model: ms between two chunks, like a real model (default 0: a burst)",
    )
    args = parser.parse_args()
    providers = set(args.providers.split(","))
    if args.fake_openai:
        serve_fake_openai(args.pace_ms / 1000)
        return

    # Started before this process loads a model or threads: a clean, separate process.
    fake = subprocess.Popen(
        [sys.executable, __file__, "--fake-openai", "--pace-ms", str(args.pace_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    fake_url = f"http://127.0.0.1:{fake.stdout.readline().strip()}/v1"

    work = Path(tempfile.mkdtemp(prefix="lf-bench-chat-"))
    port = free_port()
    lf = str(Path(sys.executable).parent / "lf")
    env = {**os.environ, "LF_VERSION_CHECK_URL": "", "LF_LOG_LEVEL": "warning"}
    log_path = work / "server.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [lf, "start", "--port", str(port), "--data-dir", str(work / "data")],
            env={**env, "LF_DATA_DIR": str(work / "data")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process = psutil.Process(server.pid)

    def server_cpu() -> float:
        """CPU seconds the server's own process has used (its worker child not counted)."""
        times = process.cpu_times()
        return float(times.user + times.system)

    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    knobs = {"max_tokens": MAX_TOKENS, "temperature": 0.0, "stream": True}
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT)
        wait_until_up(http, server, log_path)
        smol_url = make_project(http, "smol", None)
        fake_model = {"name": "default", "provider": "openai", "model": "fake"}
        loop_url = make_project(http, "loop", {**fake_model, "base_url": fake_url})
        # The project's prompt set adds the system message: the server is sent the rest.
        through = {"messages": messages[1:], **knobs, "rag_enabled": False}
        server_base = f"http://127.0.0.1:{port}"
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{os.cpu_count()} CPUs (load average {load} at start); {CHUNKS}-chunk loopback "
            f"answer, {args.pace_ms:g} ms between chunks; max_tokens {MAX_TOKENS}"
        )
        print(
            f"{'provider':<9} {'c':>2} {'n':>4}  {'direct TTFT ms':>15}  {'server TTFT ms':>15}"
            f"  {'overhead':>9}  {'tok/s (per request)':>17}  {'agg tok/s':>17}  {'server CPU':>9}"
        )
        print(
            f"{'':<9} {'':>2} {'':>4}  {'p50':>7} {'p95':>7}  {'p50':>7} {'p95':>7}  {'p50 ms':>9}"
            f"  {'direct':>8} {'server':>8}  {'direct':>8} {'server':>8}  {'ms/req':>9}"
        )

        if "slots" in providers:  # first: it times the bundled model's cold start
            slots(
                http,
                process,
                started,
                through,
                args.slot_rounds,
                threads=args.slot_threads,
                busy=args.busy,
            )
        direct_body = {"model": "fake", "messages": messages, **knobs}
        if "openai" in providers:
            compare(
                "openai",
                lambda h: stream_sse(h, f"{fake_url}/chat/completions", direct_body),
                lambda h: stream_sse(h, f"{server_base}{loop_url}", through),
                [(1, args.requests), (8, max(1, args.requests // 3))],
                server_cpu,
                spread=True,
            )
        if "universal" not in providers:
            return

        from llamafarm.chat.providers import create_provider
        from llamafarm.chat.providers.base import Generation, Message
        from llamafarm.config.models import ModelConfig

        provider = create_provider(
            ModelConfig(name="default", provider="universal", model="SmolLM2-135M-Instruct")
        )
        generation = Generation(
            messages=[Message("system", SYSTEM), Message("user", QUESTION)],
            max_tokens=MAX_TOKENS,
            temperature=0.0,
        )

        async def universal_stream() -> Sample:
            stamps: list[float] = []
            tokens = None
            started = time.perf_counter()
            async for delta in provider.stream(generation):
                if delta.content:
                    stamps.append(time.perf_counter())
                if delta.usage is not None:
                    tokens = delta.usage.completion_tokens
            return sample(started, stamps, tokens)

        def universal_direct(_: httpx.Client) -> Sample:
            return asyncio.run(universal_stream())

        n = args.universal_requests
        compare(
            "universal",
            universal_direct,
            lambda h: stream_sse(h, f"{server_base}{smol_url}", through),
            [(1, n), (8, max(1, n // 4))],
            server_cpu,
        )
        print(
            "universal at c=8: the bundled model has 8 slots, decoded together; per-request "
            "tok/s is each generation's share of the CPUs"
        )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            print(f"lf start did not stop within 60 s of SIGINT; killed (log {log_path})")
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
