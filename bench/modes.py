"""The bench's modes, each a sequence of steps on one started engine.

- ``open``: one open-loop step at the scenario's rate (fixed or Poisson arrivals).
- ``saturation``: find the highest offered rate that is *sustained*: every message completes, throughput
  keeps up with the offer, and every corridor's submit→final p99 stays under the bound. Doubles from
  ``start_rate`` until a step fails, then bisects between the last pass and the first failure.
- ``throughput``: as fast as the in-flight cap allows (closed at the cap; the engine's raw ceiling).
- ``soak``: one long open-loop step, sampling memory; flat when the heap does not grow after warm-up.
- ``linearity``: N and 10×N messages, interleaved 3 times on a warm engine; 10× the messages should cost
  ≤ 10.5× the CPU (medians).

The search and the judgements are pure functions of step results, so they are tested without an engine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.drive import StepResult
from bench.harness import Bench
from bench.recorder import Recorder

LINEARITY_LIMIT = 10.5
LINEARITY_REPEATS = 3
SOAK_SAMPLE_S = 5.0
MEMORY_TOLERANCE_MB = 16.0
MEMORY_TOLERANCE_SHARE = 0.05


@dataclass
class SaturationStep:
    rate: float
    passed: bool
    reason: str
    result: StepResult


@dataclass
class BenchResult:
    """Everything one ``smsroute bench`` invocation measured."""

    scenario: Any
    mode: str
    headline: StepResult | None
    steps: list[SaturationStep] = field(default_factory=list)
    best_rate: float | None = None
    soak: dict[str, Any] | None = None
    linearity: dict[str, Any] | None = None
    smsc: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


# --- judgements (pure) ------------------------------------------------------------------------------------


def step_verdict(step: StepResult, p99_bound_ms: float, min_completion: float) -> tuple[bool, str]:
    """Whether a saturation step sustained its offered rate, and if not, the first reason why."""
    if step.stalled:
        return False, "in-flight cap stayed full for the whole drain timeout"
    if step.unfinished:
        return False, f"{step.unfinished} messages without a final status"
    if step.errors:
        return False, f"{step.errors} submit errors"
    # Compare with what was actually sent (Poisson arrivals scatter around the nominal rate).
    offered = step.sent / step.duration_s if step.duration_s > 0 else step.offered_rate
    if offered and step.messages_per_second < min_completion * offered:
        return False, (
            f"throughput {step.messages_per_second:.0f}/s < {min_completion:.0%} of "
            f"{offered:.0f}/s sent"
        )
    for c in step.corridors.values():
        p99_ms = c.final.percentile_us(99.0) / 1000.0
        if p99_ms > p99_bound_ms:
            return False, f"{c.pop}/{c.country} final p99 {p99_ms:.2f} ms > {p99_bound_ms} ms"
    return True, "sustained"


def saturation_search(
    run: Callable[[float], tuple[bool, Any]],
    start_rate: float,
    max_rate: float,
    bisect_steps: int,
    min_rate: float = 50.0,
) -> tuple[float | None, list[tuple[float, bool, Any]]]:
    """Highest passing rate found by doubling from ``start_rate`` then bisecting.

    ``run(rate) -> (passed, payload)``. Returns ``(best rate or None, [(rate, passed, payload), ...])``.
    If ``start_rate`` itself fails the search halves downwards to ``min_rate`` before bisecting.
    """
    tried: list[tuple[float, bool, Any]] = []

    def attempt(rate: float) -> bool:
        passed, payload = run(rate)
        tried.append((rate, passed, payload))
        return passed

    best: float | None = None
    failed: float | None = None
    rate = start_rate
    if attempt(rate):
        best = rate
        while rate * 2 <= max_rate:
            rate *= 2
            if not attempt(rate):
                failed = rate
                break
            best = rate
    else:
        failed = rate
        while rate / 2 >= min_rate:
            rate /= 2
            if attempt(rate):
                best = rate
                break
            failed = rate
    if best is not None and failed is not None:
        lo, hi = best, failed
        for _ in range(bisect_steps):
            mid = round((lo + hi) / 2)
            if mid in (lo, hi):
                break
            if attempt(mid):
                lo = best = mid
            else:
                hi = mid
    return best, tried


def memory_verdict(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    """Judge RSS samples ``[(seconds since start, MB), ...]``: flat if no growth after warm-up.

    Baseline = median of the first tenth of post-warm-up samples; end = median of the last tenth.
    Flat when ``end - baseline <= max(16 MB, 5 % of baseline)``. Also reports the least-squares slope.
    """
    after = [(t, mb) for t, mb in samples if t >= warmup_s]
    if len(after) < 4:
        return {
            "flat": None,
            "reason": "too few samples after warm-up",
            "points_after_warmup": len(after),
        }
    tenth = max(1, len(after) // 10)
    baseline = statistics.median(mb for _, mb in after[:tenth])
    end = statistics.median(mb for _, mb in after[-tenth:])
    growth = end - baseline
    slope = _slope_per_minute(after)
    tolerance = max(MEMORY_TOLERANCE_MB, MEMORY_TOLERANCE_SHARE * baseline)
    return {
        "flat": growth <= tolerance,
        "baseline_mb": round(baseline, 1),
        "end_mb": round(end, 1),
        "growth_mb": round(growth, 1),
        "tolerance_mb": round(tolerance, 1),
        "slope_mb_per_min": round(slope, 3),
        "points_after_warmup": len(after),
    }


def _slope_per_minute(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / var * 60.0


def linearity_verdict(n: int, cpu_n: float, cpu_10n: float) -> dict[str, Any]:
    """10× the messages should cost at most 10.5× the CPU time."""
    ratio = cpu_10n / cpu_n if cpu_n > 0 else float("inf")
    return {
        "messages": [n, 10 * n],
        "cpu_s": [round(cpu_n, 3), round(cpu_10n, 3)],
        "ratio": round(ratio, 3),
        "limit": LINEARITY_LIMIT,
        "linear": ratio <= LINEARITY_LIMIT,
    }


# --- modes (drive an engine) ------------------------------------------------------------------------------


def run_open(bench: Bench) -> BenchResult:
    load = bench.scenario.load
    step = bench.step(rate=load.rate, duration_s=load.duration_s)
    return BenchResult(bench.scenario, "open", step)


def run_throughput(bench: Bench, messages: int | None = None) -> BenchResult:
    load = bench.scenario.load
    step = bench.step(rate=None, duration_s=load.duration_s, messages=messages)
    return BenchResult(bench.scenario, "throughput", step)


def run_saturation(bench: Bench, log: Callable[[str], None] = lambda s: None) -> BenchResult:
    load = bench.scenario.load
    steps: list[SaturationStep] = []

    def run(rate: float) -> tuple[bool, StepResult]:
        result = bench.step(rate=rate, duration_s=load.step_s)
        passed, reason = step_verdict(result, load.p99_bound_ms, load.min_completion)
        steps.append(SaturationStep(rate, passed, reason, result))
        log(
            f"  {rate:>9.0f}/s offered -> {result.messages_per_second:>9.0f}/s  "
            f"{'PASS' if passed else 'FAIL'}  {reason}"
        )
        return passed, result

    best, _ = saturation_search(run, load.start_rate, load.max_rate, load.bisect_steps)
    headline = next((s.result for s in steps if s.rate == best and s.passed), None)
    return BenchResult(bench.scenario, "saturation", headline, steps=steps, best_rate=best)


def run_soak(
    bench: Bench, minutes: float, rate: float | None = None, sample_s: float = SOAK_SAMPLE_S
) -> BenchResult:
    """An open-loop run of ``minutes`` in all (the first fifth, at most 2 min, is warm-up) at ``rate``
    (default: the scenario's), sampling memory and the final-latency p99 every ``sample_s``.

    The flat check uses anonymous memory (the heap: what a leak grows); file-backed pages (LMDB's map:
    they grow with the records the engine keeps by design) are reported beside it.
    """
    load = bench.scenario.load
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    next_sample = [started]
    user_tick = bench.options.on_tick

    def sample(recorder: Recorder | None, now: float) -> None:
        mem = bench.memory_mb()
        window = recorder.take_window_final() if recorder is not None else None
        samples.append(
            {
                "t": round(now - started, 2),
                "rss_mb": mem["rss"],
                "anon_mb": mem["anon"],
                "file_mb": mem["file"],
                "final_p99_ms": round(window.percentile_us(99.0) / 1000, 3) if window else None,
                "finals": window.count if window else 0,
            }
        )
        if window is not None:
            window.release()

    last: list[Recorder | None] = [None]

    def tick(recorder: Recorder, now: float) -> None:
        last[0] = recorder
        if now >= next_sample[0]:
            next_sample[0] = now + sample_s
            sample(recorder, now)
        if user_tick is not None:
            user_tick(recorder, now)

    bench.options.on_tick = tick
    warmup = min(120.0, 0.2 * minutes * 60)
    try:
        step = bench.step(rate=rate or load.rate, duration_s=minutes * 60 - warmup, warmup_s=warmup)
    finally:
        bench.options.on_tick = user_tick
    sample(last[0], time.perf_counter())  # the stopped recorder still holds the last window
    soak: dict[str, Any] = {"minutes": minutes, "rate": rate or load.rate, "samples": samples}
    soak.update(memory_verdict([(s["t"], s["anon_mb"]) for s in samples], warmup))
    total = memory_verdict([(s["t"], s["rss_mb"]) for s in samples], warmup)
    soak["rss_growth_mb"] = total.get("growth_mb")
    soak["rss_slope_mb_per_min"] = total.get("slope_mb_per_min")
    files = memory_verdict([(s["t"], s["file_mb"]) for s in samples], warmup)
    soak["file_slope_mb_per_min"] = files.get("slope_mb_per_min")
    return BenchResult(bench.scenario, "soak", step, soak=soak)


def run_linearity(
    bench: Bench, n: int, rate: float | None = None, repeats: int = LINEARITY_REPEATS
) -> BenchResult:
    """Warm up, then N and 10×N messages interleaved ``repeats`` times; compare median CPU times.

    Interleaving and medians keep drift (other load on the machine, LMDB growth) from deciding the
    verdict. ``rate=None``: throughput mode (as fast as the in-flight cap allows).
    """

    def run(count: int) -> StepResult:
        if rate is None:
            return bench.step(rate=None, duration_s=0, warmup_s=0, messages=count)
        return bench.step(rate=rate, duration_s=count / rate, warmup_s=0)

    run(max(100, n // 10))  # warm-up: caches, LMDB pages, thread start-up
    small: list[StepResult] = []
    large: list[StepResult] = []
    for _ in range(repeats):
        small.append(run(n))
        large.append(run(10 * n))
    cpu_n = statistics.median(s.cpu_s for s in small)
    cpu_10n = statistics.median(s.cpu_s for s in large)
    verdict = linearity_verdict(n, cpu_n, cpu_10n)
    verdict["messages"] = [
        statistics.median(s.finals for s in small),
        statistics.median(s.finals for s in large),
    ]
    verdict["repeats"] = repeats
    verdict["cpu_s_each"] = [[round(s.cpu_s, 3) for s in small], [round(s.cpu_s, 3) for s in large]]
    headline = large[[s.cpu_s for s in large].index(sorted(s.cpu_s for s in large)[repeats // 2])]
    return BenchResult(bench.scenario, "linearity", headline, linearity=verdict)
