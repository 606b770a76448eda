"""CPU per message by stage (``smsroute bench --profile-stages``): where each message's CPU time goes.

Why: a change to the hot path is judged by how many µs of CPU it saves per message, and by which stage,
not by a throughput figure that moves with the machine's load. Every actor of the engine runs on one
dispatcher thread (``actors.dispatch``), which can add up the CPU time of each message it handles per
(actor stage, message tag); this module maps those pairs to named stages, adds the host's submitting
thread and the garbage collector, and divides by the messages of the run. What no stage accounts for
(other threads: the clock, SMPP loops, HTTP; kernel time; thread hand-offs) is reported as
``unattributed`` so the stages always add up to the process's CPU.

Beside the CPU, the profile counts the commits of the run: a POP's group commit costs ~200-300 µs of CPU
whatever its size (most of it the fsyncs), so messages per commit explain much of the CPU per message (twice
as much at half the maximum rate as at saturation, see ``bench/RESULTS.md``).

Profiling costs a little itself (two clock reads per handled message: well under 1 µs per message at the
batch sizes seen under load), so figures without ``--profile-stages`` are the ones to quote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.dispatch import default_dispatcher, gc_seconds, gc_seconds_this_thread
from engine import messages as m

# (actor stage, message tag) -> stage name. Tags not listed fall into "<actor stage>: other".
STAGE_NAMES: dict[tuple[str, int], str] = {
    ("session", m.SessionRegistered.TAG): "session: other",
    ("session", m.SubmitMessage.TAG): "session: validate, price, reserve",
    ("session", m.Flush.TAG): "session: batch to POPs",
    ("session", m.StatusesChanged.TAG): "fan-out: status callbacks",
    ("pop", m.AcceptMessages.TAG): "POP: take batches",
    ("pop", m.Flush.TAG): "POP: admit and stage a batch",
    ("commit", m.Flush.TAG): "POP: group commits",
    ("pop", m.GroupCommitted.TAG): "POP: answer, bill, route after the commit",
    ("pop", m.CarrierResponded.TAG): "POP: carrier answers",
    ("pop", m.ReceiptsReceived.TAG): "POP: receipts",
    ("pop", m.Tick.TAG): "POP: timers",
    ("pop", m.RetryDue.TAG): "POP: timers",
    ("carrier", m.SubmitToCarrier.TAG): "carrier: submits",
    ("carrier", m.CarrierEmitDue.TAG): "carrier: answers and receipts",
    ("ledger", m.DebitMessages.TAG): "ledger: take debits",
    ("ledger", m.Flush.TAG): "ledger: write debits",
    ("ledger", m.Tick.TAG): "ledger: write debits",
}
HOST = "host: submit (incl. the bench driver)"
GC = "garbage collection"
UNATTRIBUTED = "unattributed (other threads, kernel, hand-offs)"


@dataclass
class StageProfile:
    """CPU seconds per named stage over one measured span, and the messages it covered."""

    messages: int = 0
    cpu_s: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    commits: dict[str, float] = field(default_factory=dict)

    def us_per_message(self) -> dict[str, float]:
        n = max(1, self.messages)
        return {name: round(sec / n * 1e6, 2) for name, sec in self.stages.items()}

    def to_json(self) -> dict[str, Any]:
        doc = {"messages": self.messages,
               "cpu_us_per_message": round(self.cpu_s / max(1, self.messages) * 1e6, 2),
               "us_per_message": self.us_per_message()}
        if self.commits:
            doc["commits"] = self.commits
        return doc


class StageProfiler:
    """Start on the host's submitting thread before a run, stop on it after (embedded path; with
    ``--workers``, every worker's stages too, named ``w<k> <stage>``)."""

    def __init__(self, cluster_shards: Any = None,
                 commit_counts: Callable[[], tuple[int, int]] | None = None) -> None:
        self._dispatcher = default_dispatcher()
        self._shards = cluster_shards
        self._commit_counts = commit_counts  # () -> (POP commits, ledger writes) so far
        self._c0 = (0, 0)
        self._t0 = self._p0 = self._g0 = self._h0 = 0.0

    def start(self) -> None:
        if self._commit_counts is not None:
            self._c0 = self._commit_counts()
        if self._shards is not None:
            self._shards.profile(True)
        self._dispatcher.profile(True)
        self._g0 = gc_seconds()
        self._h0 = gc_seconds_this_thread()
        self._t0 = time.thread_time()
        self._p0 = time.process_time()

    def stop(self, messages: int) -> StageProfile:
        host = time.thread_time() - self._t0 - (gc_seconds_this_thread() - self._h0)
        total = time.process_time() - self._p0
        snapshot = self._dispatcher.profile_snapshot()
        gc_s = gc_seconds() - self._g0
        self._dispatcher.profile(False)
        stages: dict[str, float] = {HOST: host}
        _add_named(stages, "", [(stage, tag, cpu) for (stage, tag), (cpu, _n) in snapshot.items()],
                   gc_s, total - host)
        if self._shards is not None:
            for node, remote in self._shards.profile(False).items():
                _add_named(stages, f"{node} ", remote["stages"], remote["gc"], remote["cpu"])
                total += remote["cpu"]
        ordered = dict(sorted(stages.items(), key=lambda kv: -kv[1]))
        commits: dict[str, float] = {}
        if self._commit_counts is not None:
            pop, ledger = (now - then for now, then in zip(self._commit_counts(), self._c0, strict=True))
            commits = {"pop": pop, "messages_per_pop_commit": round(messages / max(1, pop), 1),
                       "ledger": ledger}
        return StageProfile(messages=messages, cpu_s=total, stages=ordered, commits=commits)


def _add_named(stages: dict[str, float], prefix: str, raw: list, gc_s: float, cpu: float) -> None:
    """One process's (stage, tag, cpu seconds) added under their stage names, with its collector's
    time and what no stage accounts for (``cpu``: the process's CPU, less the host thread's)."""
    attributed = 0.0
    for stage, tag, seconds in raw:
        name = prefix + STAGE_NAMES.get((stage, tag), f"{stage}: other")
        stages[name] = stages.get(name, 0.0) + seconds
        attributed += seconds
    stages[prefix + GC] = stages.get(prefix + GC, 0.0) + gc_s
    stages[prefix + UNATTRIBUTED] = max(0.0, cpu - attributed - gc_s)


def format_stages(doc: dict[str, Any]) -> str:
    """The stage table printed after a run with ``--profile-stages``."""
    lines = [f"CPU per message by stage ({doc['messages']} messages,"
             f" {doc['cpu_us_per_message']:.1f} µs in all):"]
    for name, us in doc["us_per_message"].items():
        lines.append(f"  {us:8.2f} µs  {name}")
    commits = doc.get("commits")
    if commits:
        lines.append(f"commits: {commits['pop']} by the POPs ({commits['messages_per_pop_commit']} messages "
                     f"each), {commits['ledger']} by the ledger")
    return "\n".join(lines)
