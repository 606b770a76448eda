"""How bench results leave the process: JSON, a terminal table and a progress bar.

The JSON shape is the bench's public contract (``messages_per_second`` at the top and a ``corridors``
list of ``{pop, country, accepted, carrier_ack, final, ...}`` with ``p50_ms`` ... ``max_ms`` per latency
kind, the scenario's name and digest, and the latency ``target``); the table, the chart
(:mod:`bench.chart`) and ``--compare`` (:mod:`bench.compare`) all read that same shape, so a result file
from last month can be compared with today's run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import sys
from typing import Any, TextIO

from bench.drive import StepResult
from bench.modes import BenchResult
from bench.recorder import CorridorStats

SCHEMA = "smsroute-bench/1"
KINDS = ("accepted", "carrier_ack", "final")


# --- JSON -----------------------------------------------------------------------------------------------


def corridor_json(c: CorridorStats, elapsed_s: float, histograms: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"pop": c.pop, "country": c.country, "sent": c.sent, "finals": c.finals}
    for kind in KINDS:
        out[kind] = getattr(c, kind).summary_ms()
    out["throughput"] = round(c.finals / elapsed_s, 1) if elapsed_s > 0 else 0.0
    out["outcomes"] = dict(sorted(c.outcomes.items()))
    out["errors"] = dict(sorted(c.errors.items()))
    if histograms:
        out["hdr"] = {kind: getattr(c, kind).encode() for kind in KINDS}
    return out


def step_json(step: StepResult, histograms: bool = True) -> dict[str, Any]:
    corridors = sorted(step.corridors.values(), key=lambda c: (c.pop, c.country))
    return {
        "offered_rate": step.offered_rate,
        "messages_per_second": round(step.messages_per_second, 1),
        "messages": step.finals,
        "sent": step.sent,
        "elapsed_s": round(step.elapsed_s, 3),
        "cpu_s": round(step.cpu_s, 3),
        "cpu_s_per_1000": round(step.cpu_s_per_1000, 4),
        "peak_rss_mb": round(step.peak_rss_mb, 1),
        "errors": step.errors,
        "unfinished": step.unfinished,
        "stalled": step.stalled,
        "send_lag": step.send_lag.summary_ms(),
        "corridors": [corridor_json(c, step.elapsed_s, histograms) for c in corridors],
    }


def result_json(result: BenchResult) -> dict[str, Any]:
    """The whole result as the JSON document ``--json`` writes."""
    sc = result.scenario
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": sc.name,
        "scenario_digest": scenario_digest(sc),
        "target": {"p99_ms": sc.load.p99_bound_ms},
        "mode": result.mode,
        "path": sc.path,
        "carriers": f"smpp {result.smsc}" if result.smsc else "simulated",
        "arrival": sc.load.arrival,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.system(),
        },
    }
    if result.headline is not None:
        doc.update(step_json(result.headline))
    else:
        doc.update({"messages_per_second": 0.0, "corridors": []})
    if result.mode == "saturation":
        doc["saturation"] = {
            "best_rate": result.best_rate,
            "p99_bound_ms": sc.load.p99_bound_ms,
            "min_completion": sc.load.min_completion,
            "steps": [
                {
                    "rate": s.rate,
                    "passed": s.passed,
                    "reason": s.reason,
                    **{k: v for k, v in step_json(s.result, False).items() if k != "corridors"},
                    "final_p99_ms": {
                        f"{c.pop}/{c.country}": c.final.summary_ms()["p99_ms"]
                        for c in s.result.corridors.values()
                    },
                }
                for s in result.steps
            ],
        }
    if result.headline is not None and "stages" in result.headline.extra:
        doc["stages"] = result.headline.extra["stages"]
    if result.notes:
        doc["notes"] = result.notes
    if result.soak is not None:
        doc["soak"] = result.soak
    if result.linearity is not None:
        doc["linearity"] = result.linearity
    return doc


def scenario_digest(scenario: Any) -> str:
    """A short digest of everything a scenario sets (after command-line overrides): two results with
    the same digest ran the same experiment."""
    text = json.dumps(dataclasses.asdict(scenario), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or "corridors" not in doc or "messages_per_second" not in doc:
        raise ValueError(f"{path} is not a bench result (no messages_per_second / corridors)")
    return doc


# --- the terminal table ------------------------------------------------------------------------------


def format_table(doc: dict[str, Any]) -> str:
    """The per-corridor table and the overall figures, as printed at the end of a run."""
    head = (
        f"{'POP':<4} {'CC':<3} {'final':>8} {'msg/s':>8} │ {'acc p50':>8} {'p99':>8} │"
        f" {'ack p50':>8} {'p99':>8} │ {'final p50':>9} {'p90':>8} {'p99':>8} {'p99.9':>8}"
        f" {'max':>8} │ outcomes / errors"
    )
    lines = [head, "─" * len(head)]
    for c in doc["corridors"]:
        a, k, f = c["accepted"], c["carrier_ack"], c["final"]
        tail = " ".join(f"{n}={v}" for n, v in c["outcomes"].items())
        if c["errors"]:
            tail += "  ERR " + " ".join(f"{n}={v}" for n, v in c["errors"].items())
        lines.append(
            f"{c['pop']:<4} {c['country']:<3} {c['finals']:>8} {c['throughput']:>8.0f} │"
            f" {a['p50_ms']:>8.2f} {a['p99_ms']:>8.2f} │ {k['p50_ms']:>8.2f} {k['p99_ms']:>8.2f} │"
            f" {f['p50_ms']:>9.2f} {f['p90_ms']:>8.2f} {f['p99_ms']:>8.2f} {f['p999_ms']:>8.2f}"
            f" {f['max_ms']:>8.2f} │ {tail}"
        )
    lines.append(
        "latencies in ms from the intended send time (submit→accepted, →carrier ack, →final)"
    )
    lines.append(_overall_line(doc))
    if "saturation" in doc:
        s = doc["saturation"]
        best = f"{s['best_rate']:.0f}/s" if s["best_rate"] else "none"
        lines.append(
            f"saturation: best sustained offered rate {best} (final p99 <= {s['p99_bound_ms']} ms)"
        )
    if "soak" in doc:
        s = doc["soak"]
        lines.append(
            f"soak {s['minutes']} min: heap (anon RSS) {s.get('baseline_mb')} -> {s.get('end_mb')} MB"
            f" (growth {s.get('growth_mb')} MB, slope {s.get('slope_mb_per_min')} MB/min):"
            f" {'FLAT' if s.get('flat') else 'NOT FLAT' if s.get('flat') is False else 'n/a'};"
            f" total RSS slope {s.get('rss_slope_mb_per_min')} MB/min, of which mapped files"
            f" {s.get('file_slope_mb_per_min')} MB/min"
        )
    if "stages" in doc:
        from bench.stages import format_stages

        lines.append(format_stages(doc["stages"]))
    if "linearity" in doc:
        lin = doc["linearity"]
        lines.append(
            f"linearity: {lin['messages'][0]} vs {lin['messages'][1]} messages cost "
            f"{lin['cpu_s'][0]} vs {lin['cpu_s'][1]} CPU s = {lin['ratio']}x "
            f"({'OK' if lin['linear'] else 'OVER'} limit {lin['limit']}x)"
        )
    return "\n".join(lines)


def _overall_line(doc: dict[str, Any]) -> str:
    offered = doc.get("offered_rate")
    lag = doc.get("send_lag", {})
    return (
        f"overall: {doc['messages_per_second']:.0f} msg/s"
        f" (offered {'max' if offered is None else f'{offered:.0f}/s'}),"
        f" {doc.get('messages', 0)} messages, CPU {doc.get('cpu_s_per_1000', 0):.3f} s/1000 msgs,"
        f" peak RSS {doc.get('peak_rss_mb', 0):.0f} MB, errors {doc.get('errors', 0)},"
        f" bench send lag p99 {lag.get('p99_ms', 0):.2f} ms"
    )


# --- progress ------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal stream, redrawn at most every 0.2 s (by the driver)."""

    def __init__(self, stream: TextIO | None = None, total_s: float = 0.0, width: int = 24) -> None:
        # sys.stderr as it is now, not as it was at import (a test's captured stream may be closed since)
        self.stream, self.total_s, self.width = stream or sys.stderr, total_s, width
        self.enabled = self.stream.isatty()
        self._start: float | None = None

    def tick(self, recorder: Any, now: float) -> None:
        if not self.enabled:
            return
        if self._start is None:
            self._start = now
        elapsed = now - self._start
        share = min(1.0, elapsed / self.total_s) if self.total_s > 0 else 0.0
        filled = int(share * self.width)
        bar = "█" * filled + "·" * (self.width - filled)
        self.stream.write(
            f"\r[{bar}] {elapsed:6.1f}s  in flight {recorder.in_flight:>6}"
            f"  done {recorder.left_flight:>9}  "
        )
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._start is not None:
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
            self.stream.flush()
        self._start = None
