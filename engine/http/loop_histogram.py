"""A labelled histogram observed on one thread (the HTTP loop), scraped like ``prometheus_client``'s.

Why: ``prometheus_client.Histogram.observe`` checks the metric, takes a lock for the sum and another for
the bucket, and walks the bounds in Python on every call; the two observations of each submit (the
request's duration, the submit's latency) cost more than decoding its body. Here an observation is one
``bisect`` and two additions on plain Python numbers. The exposition is the library's own for a histogram
(``_bucket`` cumulative per ``le``, ``_count``, ``_sum`` and the ``_created`` gauge), so dashboards and
alerts read the same series.

Threads: observed by one thread only (the HTTP loop's); a scrape may run on another thread. The scrape
copies the series first and derives ``_count`` from the buckets, so a scrape taken while an observation
lands sees it whole in the buckets and the count, or not at all (the sum may lag it by that one
observation, as with the library's own histograms).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString


class Series:
    """One label set's buckets (not cumulative), sum and creation time."""

    __slots__ = ("counts", "sum", "created")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum = 0.0
        self.created = time.time()


class LoopHistogram:
    """``name`` with ``labelnames``, bucket upper bounds ``buckets`` (``+Inf`` is added)."""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str],
                 buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets) + (math.inf,)
        self._les = tuple(floatToGoString(b) for b in self.bounds)
        self._series: dict[tuple[str, ...], Series] = {}

    def series(self, *labelvalues: str) -> Series:
        """The series of these label values (created at its first observation, as a library child)."""
        found = self._series.get(labelvalues)
        if found is None:
            if len(labelvalues) != len(self.labelnames):
                raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected")
            found = self._series[labelvalues] = Series(len(self.bounds))
        return found

    def observe(self, series: Series, amount: float) -> None:
        """Count ``amount`` in ``series`` (a bucket's bound is inclusive, as the library's ``le``)."""
        series.counts[bisect_left(self.bounds, amount)] += 1
        series.sum += amount

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> list[Metric]:
        metric = Metric(self.name, self.documentation, "histogram")
        for labelvalues, series in list(self._series.items()):
            labels = dict(zip(self.labelnames, labelvalues, strict=True))
            counts, total = list(series.counts), series.sum
            cumulative = 0
            for le, count in zip(self._les, counts, strict=True):
                cumulative += count
                metric.add_sample(self.name + "_bucket", {**labels, "le": le}, cumulative)
            metric.add_sample(self.name + "_count", labels, cumulative)
            metric.add_sample(self.name + "_sum", labels, total)
            metric.add_sample(self.name + "_created", labels, series.created)
        return [metric]
