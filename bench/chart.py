"""``smsroute bench --chart``: a PNG of each corridor's latency distribution against the target.

One panel per latency kind (submit → accepted, → carrier ack, → final): the percentile on a log-odds x
axis (p50 … p99.99), the latency on a log y axis (a 1 ms median and a 2 s stall fit one picture), and
the target — p99 at most ``target.p99_ms`` of the result (the scenario's ``p99_bound_ms``, 5 ms by
default) — as a dashed line with its point marked. A corridor's curve stops at the highest percentile
its sample count supports (``1 - 1/n``: 100 samples say nothing about p99.9), so a short run does not
draw a tail it never measured. A soak run adds memory and windowed p99 over time.
"""

from __future__ import annotations

from typing import Any

from bench.histogram import LatencyHistogram

KINDS = ("accepted", "carrier_ack", "final")
DEFAULT_TARGET_P99_MS = 5.0
TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def supported_percentile(count: int) -> float:
    """The highest percentile ``count`` samples can tell (0 for an empty histogram).

    >>> supported_percentile(100), supported_percentile(1000)
    (99.0, 99.9)
    """
    return 0.0 if count <= 0 else round(100.0 * (1.0 - 1.0 / count), 6)


def corridor_points(encoded: str) -> list[tuple[float, float]]:
    """(percentile, latency ms) of one encoded histogram, up to the percentile its count supports."""
    if not encoded:
        return []
    h = LatencyHistogram.decode(encoded)
    limit = supported_percentile(h.count)
    return [(p, ms) for ms, p in h.distribution_ms() if p <= limit]


def target_p99_ms(doc: dict[str, Any]) -> float:
    return float((doc.get("target") or {}).get("p99_ms") or DEFAULT_TARGET_P99_MS)


def build_chart(doc: dict[str, Any]) -> Any:
    """The matplotlib figure of ``doc`` (a result as ``--json`` writes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = (doc.get("soak") or {}).get("samples") or []
    if samples:
        fig = plt.figure(figsize=(15, 9))
        grid = fig.add_gridspec(2, 3)
        axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
        _soak_panel(fig.add_subplot(grid[1, :]), samples)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=False)
    target = target_p99_ms(doc)
    for ax, kind in zip(axes, KINDS, strict=True):
        _latency_panel(ax, doc["corridors"], kind, target)
    axes[0].legend(fontsize=8)
    offered = doc.get("offered_rate")
    fig.suptitle(
        f"smsroute bench '{doc.get('scenario')}' ({doc.get('path')}, offered "
        f"{'max' if offered is None else f'{offered:.0f}/s'}): {doc['messages_per_second']:.0f} "
        f"msg/s; target p99 ≤ {target:g} ms")
    fig.tight_layout()
    return fig


def write_chart(doc: dict[str, Any], path: str) -> None:
    import matplotlib.pyplot as plt

    fig = build_chart(doc)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _odds(percentile: float) -> float:
    return 1.0 / (1.0 - min(percentile, 99.999) / 100.0)


def _latency_panel(ax: Any, corridors: list[dict[str, Any]], kind: str, target: float) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    for c in corridors:
        points = corridor_points(c.get("hdr", {}).get(kind, ""))
        if points:
            ax.plot([_odds(p) for p, _ in points], [max(ms, 0.001) for _, ms in points],
                    label=f"{c['pop']}/{c['country']}")
    ax.axhline(target, color="red", linestyle="--", linewidth=1, label=f"target p99 ≤ {target:g} ms")
    ax.plot([_odds(99.0)], [target], marker="o", color="red", linestyle="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(FixedLocator([_odds(p) for p in TICKS]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"p{100 * (1 - 1 / x):g}"))
    ax.set_title(f"submit → {kind.replace('_', ' ')}")
    ax.set_ylabel("latency (ms, log)")
    ax.grid(True, which="both", alpha=0.3)


def _soak_panel(ax: Any, samples: list[dict[str, Any]]) -> None:
    """Memory (heap and mapped files) and the windowed final p99 over a soak run."""
    minutes = [x["t"] / 60.0 for x in samples]
    ax.plot(minutes, [x["anon_mb"] for x in samples], label="heap (anon RSS) MB")
    ax.plot(minutes, [x["file_mb"] for x in samples], label="mapped files (LMDB) MB")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.grid(True, alpha=0.3)
    right = ax.twinx()
    windows = [(m, x["final_p99_ms"]) for m, x in zip(minutes, samples, strict=True) if x["finals"]]
    right.plot([m for m, _ in windows], [v for _, v in windows], "k:", label="final p99 per window")
    right.set_ylabel("final p99 (ms)")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    ax.set_title("soak: memory and latency over time")
