"""Latency histograms for the bench: HdrHistogram in microseconds, summarised in milliseconds.

Why a wrapper: the bench records millions of latencies per run, so it must not keep a sorted list; an
HdrHistogram keeps a fixed-size array of buckets with 3 significant figures (±0.1 %), and merging two is
exact. This module fixes the unit (whole microseconds, clamped to the trackable range so a stall never
disappears from the record) and the summary every report uses: p50, p90, p99, p99.9 and max.

>>> h = LatencyHistogram()
>>> for us in range(1, 1001):
...     h.record_us(us)
>>> h.summary_ms()["p99_ms"]
0.99
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped, never dropped
SIGNIFICANT_FIGURES = 3

#: The percentiles every report shows, as (JSON key, percentile).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50_ms", 50.0),
    ("p90_ms", 90.0),
    ("p99_ms", 99.0),
    ("p999_ms", 99.9),
)


FLUSH_AT = 1 << 13  # values buffered before they are folded in one go (64 KB per histogram: the bench
# keeps ~20 histograms in the process it measures, and 512 KB buffers filling and emptying showed as heap)


class LatencyHistogram:
    """Latencies recorded in microseconds; percentiles read back in microseconds or milliseconds.

    Recording only appends to a buffer (~0.1 µs: the bench's collector shares the interpreter with the
    engine it measures, so each µs it spends is a µs the engine does not get); the buffer is folded into
    the HdrHistogram by :func:`_fold`, vectorised, when it is full or before anything is read. The
    result is exactly what recording each value with ``HdrHistogram.record_value`` gives (tested).

    Not thread-safe: one thread records (the bench's collector), others only read after it stops.
    """

    def __init__(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self._buf = array("q")
        self.clamped = 0  # how many values were outside the trackable range

    @property
    def _h(self) -> HdrHistogram:
        """The HdrHistogram with everything recorded so far folded in."""
        if self._buf:
            _fold(self._hist, self._buf)
            self._buf = array("q")
        return self._hist

    @property
    def count(self) -> int:
        return self._hist.get_total_count() + len(self._buf)

    def record_us(self, us: float) -> None:
        """Record one latency in microseconds (rounded; clamped to 1 µs .. 1 h)."""
        v = int(us + 0.5)
        if v < LOWEST_US:
            v = LOWEST_US
        elif v > HIGHEST_US:
            v = HIGHEST_US
            self.clamped += 1
        self._buf.append(v)
        if len(self._buf) >= FLUSH_AT:
            _fold(self._hist, self._buf)
            self._buf = array("q")

    def record_seconds(self, seconds: float) -> None:
        """Record one latency given in seconds (the unit of ``time.perf_counter`` differences)."""
        self.record_us(seconds * 1e6)

    def percentile_us(self, percentile: float) -> int:
        """The value at ``percentile`` (0..100) in µs; 0 when nothing was recorded."""
        if self.count == 0:
            return 0
        return self._h.get_value_at_percentile(percentile)

    def max_us(self) -> int:
        return self._h.get_max_value() if self.count else 0

    def mean_us(self) -> float:
        return self._h.get_mean_value() if self.count else 0.0

    def release(self) -> None:
        """Free the buckets now. An ``HdrHistogram`` and its encoder refer to each other, so a dropped
        one (~190 KB of counters) is freed only by a full cyclic collection, which a tuned engine in the
        same process runs rarely (``engine/gc_tuning.py``): a soak taking a window every 5 s grew its
        heap by ~3 MB a minute that way. The histogram is empty and unusable afterwards."""
        self._hist.encoder = None
        self._buf = array("q")

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value recorded in ``other`` to this histogram (exact)."""
        self._h.add(other._h)
        self.clamped += other.clamped

    def summary_ms(self) -> dict[str, float | int]:
        """``{p50_ms, p90_ms, p99_ms, p999_ms, max_ms, mean_ms, count}`` rounded to 0.001 ms."""
        out: dict[str, float | int] = {
            key: round(self.percentile_us(p) / 1000.0, 3) for key, p in PERCENTILES
        }
        out["max_ms"] = round(self.max_us() / 1000.0, 3)
        out["mean_ms"] = round(self.mean_us() / 1000.0, 3)
        out["count"] = self.count
        return out

    def distribution_ms(self) -> Iterator[tuple[float, float]]:
        """(latency ms, cumulative percentile) points for a chart of the whole distribution."""
        if self.count == 0:
            return
        for item in self._h.get_percentile_iterator(5):
            yield item.value_iterated_to / 1000.0, item.percentile_level_iterated_to

    @classmethod
    def decode(cls, encoded: str) -> LatencyHistogram:
        """The histogram :meth:`encode` wrote (an empty string gives an empty histogram)."""
        h = cls()
        if encoded:
            h._hist = HdrHistogram.decode(encoded.encode("ascii"))
        return h

    def encode(self) -> str:
        """The compressed HdrHistogram log form (base64), for storing the full distribution in JSON."""
        return self._h.encode().decode("ascii") if self.count else ""


def _fold(h: HdrHistogram, values: array) -> None:
    """Add ``values`` (µs, already clamped to the histogram's range) to ``h`` as ``record_value`` would,
    with HdrHistogram's own bucket arithmetic done on the whole array at once."""
    v = np.frombuffer(values, dtype=np.int64)
    # bit length of (v | sub_bucket_mask) = HdrHistogram's "64 - clz"; exact for v < 2**53
    pow2ceiling = np.frexp((v | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = pow2ceiling - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket - h.sub_bucket_half_count
    counts = np.ctypeslib.as_array(h.counts)
    counts += np.bincount(index, minlength=h.counts_len)[: h.counts_len].astype(counts.dtype)
    h.total_count += len(v)
    h.min_value = min(h.min_value, int(v.min()))
    h.max_value = max(h.max_value, int(v.max()))
