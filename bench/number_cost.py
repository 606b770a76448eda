"""What validating a destination number costs, old path and new path side by side in one run.

What is measured: microseconds of CPU time per number (``time.process_time``: time spent waiting for a
core shared with other work is not counted, and the issue's budget is CPU per message too) for
*distinct, valid* numbers, every one a cache miss as with real traffic, for

* ``phonenumbers`` — ``parse`` + ``is_valid_number`` + ``format_number`` + ``region_code_for_number``,
  the path every uncached number took before the compiled numbering plans
  (``engine.numbers._parse_with_phonenumbers``, still the fallback), and
* ``parse_destination`` — the engine's function as it is now (form check, cache miss, compiled plans,
  fallback for what they leave undecided), with its cache cleared before every pass.

Two workloads, because the old path's cost depends on how many countries the traffic spans
(``phonenumbers`` compiles its patterns through ``re``'s 512-entry cache, which thrashes over many
countries): the mobile numbers of every region that has an example mobile number, and those of the six
countries of the bench's ``default`` scenario. Numbers are varied from each region's example mobile number
(last digits random, seeded) and kept only if ``phonenumbers`` finds them valid for that region.
Each figure is the median of ``--repeats`` passes; the old path is timed on at most ``--old-sample``
numbers of the same shuffled list (it is ~100× slower). The machine is shared: compare the two columns of
one run, not figures across runs.

    python -m bench.number_cost [--per-region 100] [--repeats 5] [--old-sample 5000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from engine import numbering_plans
from engine.numbers import _parse_cached, _parse_with_phonenumbers, parse_destination

SCENARIO_COUNTRIES = ("DE", "FR", "SG", "IN", "BR", "MX")  # bench/scenarios/default.toml
# Workload name -> its regions (None: every region); the six countries get ten times the numbers each.
WORKLOADS = {"every region": None, "default scenario (6 countries)": SCENARIO_COUNTRIES}


def valid_numbers(regions: Sequence[str] | None, per_region: int, seed: int = 1) -> list[str]:
    """Distinct valid mobile numbers (E.164), ``per_region`` at most for each region, shuffled."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    for code, names in COUNTRY_CODE_TO_REGION_CODE.items():
        for region in names:
            if regions is None or region in regions:
                found.update(dict.fromkeys(_mobiles_of(code, region, per_region, rng)))
    numbers = list(found)
    rng.shuffle(numbers)
    return numbers


def _mobiles_of(code: int, region: str, count: int, rng: random.Random) -> list[str]:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    example = metadata.mobile.example_number if metadata and metadata.mobile else None
    if not example:
        return []
    tail = min(4, len(example) - 2)
    found: dict[str, None] = {}
    for _ in range(count * 20):
        if len(found) >= count:
            break
        text = f"+{code}{example[:-tail]}{''.join(rng.choice('0123456789') for _ in range(tail))}"
        number = phonenumbers.parse(text)
        if (
            phonenumbers.is_valid_number(number)
            and phonenumbers.region_code_for_number(number) == region
            and phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == text
        ):
            found[text] = None
    return list(found)


def _us_per_number(function: Callable[[str], object], numbers: Sequence[str], repeats: int,
                   before: Callable[[], None] = lambda: None) -> float:
    runs = []
    for _ in range(repeats):
        before()
        start = time.process_time()
        for text in numbers:
            function(text)
        runs.append((time.process_time() - start) / len(numbers) * 1e6)
    return statistics.median(runs)


def measure(name: str, numbers: Sequence[str], repeats: int, old_sample: int) -> dict:
    """One workload: both paths over the same numbers, and how many the compiled plans left undecided."""
    for text in numbers:  # compile every country's plan first: a one-time cost, reported separately
        numbering_plans.classify(text[1:])
    undecided = sum(numbering_plans.classify(text[1:]) is None for text in numbers)
    old = _us_per_number(_parse_with_phonenumbers, numbers[:old_sample], repeats)
    new = _us_per_number(parse_destination, numbers, repeats, before=_parse_cached.cache_clear)
    return {
        "workload": name,
        "numbers": len(numbers),
        "regions": len({parse_destination(text).region for text in numbers}),
        "phonenumbers_us": round(old, 2),
        "parse_destination_us": round(new, 2),
        "ratio": round(old / new, 1),
        "fallback_share": round(undecided / len(numbers), 4),
    }


def compile_cost_ms() -> float:
    """CPU milliseconds to compile every country code's plan from metadata already loaded."""
    PhoneMetadata.load_all()
    start = time.process_time()
    for code in COUNTRY_CODE_TO_REGION_CODE:
        numbering_plans._compile(code)
    return (time.process_time() - start) * 1e3


def run(per_region: int, repeats: int, old_sample: int) -> dict:
    rows = []
    for name, regions in WORKLOADS.items():
        numbers = valid_numbers(regions, per_region if regions is None else per_region * 10)
        rows.append(measure(name, numbers, repeats, old_sample))
    return {"rows": rows, "compile_all_ms": round(compile_cost_ms(), 1)}


def print_table(result: dict) -> None:
    print(f"{'workload':<32} {'numbers':>8} {'regions':>8} {'phonenumbers µs':>16} "
          f"{'parse_destination µs':>21} {'ratio':>6} {'fallback':>9}")
    for r in result["rows"]:
        print(f"{r['workload']:<32} {r['numbers']:>8} {r['regions']:>8} {r['phonenumbers_us']:>16.2f} "
              f"{r['parse_destination_us']:>21.2f} {r['ratio']:>5.1f}× {r['fallback_share']:>9.2%}")
    print(f"CPU µs per distinct valid number; compiling every country code's plan once: "
          f"{result['compile_all_ms']:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-region", type=int, default=100, help="numbers per region (×10 for six)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--old-sample", type=int, default=5000, help="numbers timed on the old path")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    result = run(args.per_region, args.repeats, args.old_sample)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
