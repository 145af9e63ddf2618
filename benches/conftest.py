"""Benchmarks report ratios against a baseline measured in the same run.

Each group has one test named *_baseline (raw wasmtime-py, raw blake3, ...) and one or more
*_poe tests; at the end of the session the medians are printed as ratios. Run with:

    python3 -m pytest benches --benchmark-enable

(`pytest` alone runs them once each, untimed, as smoke tests.)
"""

from __future__ import annotations

from collections import defaultdict

import pytest

_MEDIANS: dict[str, dict[str, float]] = defaultdict(dict)
_EXTRA: dict[str, dict[str, object]] = {}


@pytest.fixture
def measured(benchmark, request):
    """The benchmark fixture, plus recording of its median for the ratio table."""
    yield benchmark
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        group = benchmark.group or request.node.name
        _MEDIANS[group][request.node.name] = stats.stats.median
        if benchmark.extra_info:
            _EXTRA[request.node.name] = dict(benchmark.extra_info)


def pytest_terminal_summary(terminalreporter):
    if not _MEDIANS:
        return
    tr = terminalreporter
    tr.section("poe ratios (median; same run)")
    for group, medians in sorted(_MEDIANS.items()):
        base = next((v for k, v in medians.items() if k.split("[")[0].endswith("_baseline")), None)
        for name, median in sorted(medians.items()):
            ratio = f"{median / base:6.3f}x" if base else "   n/a "
            extra = _EXTRA.get(name, {})
            notes = "  ".join(f"{k}={v}" for k, v in extra.items())
            tr.write_line(f"{group:<12} {name:<44} {median * 1e6:12.1f} us  {ratio}  {notes}")
