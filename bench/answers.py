"""Do the bundled model's answers end? Completion tokens for the README's example question.

    .venv/bin/python bench/answers.py [--runs 5]

The question is the README quickstart's (`lf chat default/home_solar "How long must you wait ..."`),
asked the way the server asks it: the home_solar example's system prompt, then the two manual
pages the README shows as the top sources (pages 3 and 8, numbered as `chat/prepare.py` numbers
retrieved chunks), then the question. Each setting is asked `--runs` times with seeds 1..N
(the model samples, at llama.cpp's default temperature unless the setting gives one):

- `before, bare`: the bundled model as a plain `universal` model was asked before it had
  defaults (the old `max_tokens` 512, nothing else), as `lf init`'s templates configure it;
- `before, example`: the same plus the example's own `temperature: 0.2, repeat_penalty: 1.3`;
- `after, bare` and `after, example`: the same with the bundled model's defaults
  (`universal.BUNDLED_DEFAULTS`: DRY, repeat penalty, `max_tokens` 192).

It prints each run's completion tokens and finish reason, then the median and the maximum per
setting. Target: answers under 200 tokens, most finished with "stop" (a 135M model sometimes
rambles on without repeating itself; `max_tokens` cuts it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import pypdf

from llamafarm import bundled
from llamafarm.chat.providers.base import Generation, Message
from llamafarm.chat.providers.universal import UniversalProvider
from llamafarm.config.models import ModelConfig

EXAMPLE = Path(__file__).parent.parent / "src/llamafarm/examples/data/home_solar"
QUESTION = (
    "How long must you wait after switching off the SunLeaf 5000 before opening the wiring "
    "compartment cover?"
)
SYSTEM = (
    "You are a support assistant for the SunLeaf 5000 solar inverter, helping homeowners and "
    "installers. Answer from the provided context when it is relevant, and say so when the "
    "context does not contain the answer. Keep answers short and cite the source file."
)
PAGES = (3, 8)
EXAMPLE_PARAMETERS: dict[str, Any] = {"temperature": 0.2, "repeat_penalty": 1.3}
OLD_MAX_TOKENS = 512


def context() -> str:
    reader = pypdf.PdfReader(EXAMPLE / "files/sunleaf-5000-manual.pdf")
    parts = [
        "Excerpts from the project's documents that may help answer. Use them when they are "
        "relevant and cite their source."
    ]
    for number, page in enumerate(PAGES, start=1):
        text = reader.pages[page - 1].extract_text()
        parts.append(f"[{number}] sunleaf-5000-manual.pdf, page {page}\n{text}")
    return "\n\n".join(parts)


def provider(*, defaults: bool) -> UniversalProvider:
    """The bundled model by its name (with its defaults), or by its file's path (without)."""
    model = bundled.CHAT if defaults else str(bundled.chat_path())
    return UniversalProvider(ModelConfig(name="default", provider="universal", model=model))


def ask(
    model: UniversalProvider, parameters: dict[str, Any], *, seed: int, max_tokens: int | None
) -> tuple[int, str]:
    """One answer's completion tokens and finish reason; `parameters` go where the server puts
    the model's `model_api_parameters` (the generation's `extra`)."""
    messages = [
        Message(role="system", content=SYSTEM),
        Message(role="system", content=context()),
        Message(role="user", content=QUESTION),
    ]
    result = model.complete(
        Generation(messages=messages, seed=seed, max_tokens=max_tokens, extra=dict(parameters))
    )
    return (result.usage.completion_tokens if result.usage else -1), result.finish_reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = [
        ("before, bare", False, {}),
        ("before, example", False, EXAMPLE_PARAMETERS),
        ("after, bare", True, {}),
        ("after, example", True, EXAMPLE_PARAMETERS),
    ]
    for label, defaults, parameters in settings:
        model = provider(defaults=defaults)
        tokens: list[int] = []
        started = time.perf_counter()
        for seed in range(1, args.runs + 1):
            count, finish = ask(
                model, parameters, seed=seed, max_tokens=None if defaults else OLD_MAX_TOKENS
            )
            tokens.append(count)
            print(f"{label:16} seed {seed}: {count:4} tokens, {finish}", flush=True)
        print(
            f"{label:16} median {statistics.median(tokens):5.0f}  max {max(tokens):4}  "
            f"({time.perf_counter() - started:.0f} s)\n",
            flush=True,
        )


if __name__ == "__main__":
    main()
