"""metrics.observe_many: one batched observe exposes exactly what one observe per amount does."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess, values

from mutt_app import metrics

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Multiples of 1/1024 below 2**20: every sum of them is exact, in any order, so the two ways of
# adding give the same bits and the pages can be compared as text. Some sit on a bound exactly
# (an amount equal to a bound counts in that bound's bucket), some past the last (+Inf).
EXACT = [0.0, 0.009765625, 0.25, 0.5, 1.0, 0.3046875, 2.5, 5.0, 299.0, 300.0, 301.5, 4096.0, 0.125]


def _page(registry: CollectorRegistry) -> str:
    # _created is the histogram's creation time: two histograms never share it.
    return "\n".join(
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    )


def _in_process(feed: Callable[[Histogram], None]) -> str:
    registry = CollectorRegistry()
    feed(Histogram("mutt_test_latency_seconds", "test", buckets=BUCKETS, registry=registry))
    return _page(registry)


def _multiprocess(
    feed: Callable[[Histogram], None], directory: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """``feed`` a histogram whose values live in mmap files under ``directory``, as the deployed
    workers' do (PROMETHEUS_MULTIPROC_DIR); the page is what a scrape merges from there."""
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    value_class = values.MultiProcessValue()
    with monkeypatch.context() as patch:
        patch.setattr(values, "ValueClass", value_class)
        histogram = Histogram("mutt_test_latency_seconds", "test", buckets=BUCKETS, registry=None)
    feed(histogram)
    value_class.close_all_files()  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return _page(registry)


def _one_by_one(amounts: list[float]) -> Callable[[Histogram], None]:
    def feed(histogram: Histogram) -> None:
        for amount in amounts:
            histogram.observe(amount)

    return feed


def _batched(*batches: list[float]) -> Callable[[Histogram], None]:
    def feed(histogram: Histogram) -> None:
        for batch in batches:
            metrics.observe_many(histogram, batch)

    return feed


def test_batched_observe_gives_the_same_page_as_one_observe_per_amount() -> None:
    assert _in_process(_batched(EXACT[:5], [], EXACT[5:])) == _in_process(_one_by_one(EXACT))


def test_batched_observe_gives_the_same_merged_page_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_by_one = _multiprocess(_one_by_one(EXACT), tmp_path / "one", monkeypatch)
    batched = _multiprocess(_batched(EXACT[:5], EXACT[5:]), tmp_path / "batched", monkeypatch)
    assert "mutt_test_latency_seconds_count 13.0" in one_by_one
    assert batched == one_by_one


def test_batched_observe_counts_any_latencies_alike_and_sums_them_up_to_rounding() -> None:
    rng = random.Random(7)
    amounts = [rng.expovariate(2.0) for _ in range(1000)]
    one, batched = CollectorRegistry(), CollectorRegistry()
    a = Histogram("mutt_test_latency_seconds", "test", buckets=BUCKETS, registry=one)
    b = Histogram("mutt_test_latency_seconds", "test", buckets=BUCKETS, registry=batched)
    _one_by_one(amounts)(a)
    _batched(amounts[:400], amounts[400:])(b)
    buckets = {
        s.labels["le"]: s.value for s in next(iter(one.collect())).samples if "le" in s.labels
    }
    assert buckets == {
        s.labels["le"]: s.value for s in next(iter(batched.collect())).samples if "le" in s.labels
    }
    assert one.get_sample_value("mutt_test_latency_seconds_count") == 1000
    assert batched.get_sample_value("mutt_test_latency_seconds_count") == 1000
    assert math.isclose(
        one.get_sample_value("mutt_test_latency_seconds_sum") or 0,
        batched.get_sample_value("mutt_test_latency_seconds_sum") or 0,
        rel_tol=1e-12,
    )


def test_batched_observe_of_nothing_writes_nothing() -> None:
    assert _in_process(_batched([], [])) == _in_process(_one_by_one([]))


def test_batched_observe_refuses_a_labelled_parent_as_observe_does() -> None:
    histogram = Histogram(
        "mutt_test_by_route_seconds", "test", ["route"], buckets=BUCKETS, registry=None
    )
    with pytest.raises(ValueError, match="missing label values"):
        metrics.observe_many(histogram, [0.1])
    metrics.observe_many(histogram.labels("a"), [0.1])
