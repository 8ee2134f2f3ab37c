"""Ranking experiments the way the challenge reportedly ranks entries: a Borda count over FAD, CLAP and CCS.

For each metric the experiments are ordered best first (FAD: lower is better; CLAP, CCS: higher is better). With
n experiments, the k-th (0-based) gets n − 1 − k points; the Borda score is the sum over the three metrics, and
the final ranking orders it highest first.

- **Ties**: experiments with equal values share their positions' points equally (fractional Borda: two
  experiments tied for best among four get (3 + 2) / 2 = 2.5 each). Equal Borda scores share a rank
  (competition ranking: 1, 1, 3); the table lists them by name.
- **Missing metrics**: an experiment without a value for a metric (evaluate not run, failed, or a metric its
  params do not produce) is placed after every experiment that has one — tied with the other experiments missing
  it — so it can never gain by a missing number. An experiment with none of the three metrics is not ranked at
  all (listed as unranked with the reason).
- Values are the headline of ``reports/metrics.json`` (the chosen seed of every *ranked* prompt); non-finite
  values count as missing.

``borda_ranking(experiments)`` returns a :class:`Ranking`; ``format_table`` prints it within 100 columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

METRICS: dict[str, str] = {"fad": "lower", "clap": "higher", "ccs": "higher"}  # the challenge's three
TABLE_WIDTH = 100


@dataclass(frozen=True)
class Experiment:
    """One experiment: a display ``name``, its git ``rev`` and the values it has of the ranked metrics."""

    name: str
    rev: str
    values: Mapping[str, float | None]


@dataclass(frozen=True)
class Ranked:
    experiment: Experiment
    points: dict[str, float]
    borda: float
    rank: int


@dataclass(frozen=True)
class Ranking:
    """The ranked experiments (best first) and the ones that could not be ranked (name -> reason)."""

    ranked: list[Ranked]
    unranked: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``reports/ranking.json``: the rule, every ranked experiment with its values, points and rank."""
        return {
            "rule": (
                "Borda count over fad (lower is better), clap and ccs (higher is better): with n experiments the "
                "k-th best on a metric gets n-1-k points; ties share their positions' points; a missing metric "
                "ranks after every present one"
            ),
            "metrics": dict(METRICS),
            "experiments": [
                {
                    "rank": r.rank,
                    "name": r.experiment.name,
                    "rev": r.experiment.rev,
                    "borda": r.borda,
                    "points": r.points,
                    "values": {m: r.experiment.values.get(m) for m in METRICS},
                }
                for r in self.ranked
            ],
            "unranked": dict(self.unranked),
        }


def _value(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        return None
    return float(raw)


def metric_points(values: Sequence[float | None], better: str) -> list[float]:
    """Borda points of each experiment on one metric (fractional for ties; missing values rank last)."""
    n = len(values)
    sign = 1.0 if better == "lower" else -1.0
    keyed = sorted(
        range(n), key=lambda i: (values[i] is None, sign * values[i] if values[i] is not None else 0)
    )
    points = [0.0] * n
    start = 0
    while start < n:
        end = start + 1
        while end < n and values[keyed[end]] == values[keyed[start]]:
            end += 1  # equal values (or both missing) tie
        shared = sum(n - 1 - k for k in range(start, end)) / (end - start)
        for k in range(start, end):
            points[keyed[k]] = shared
        start = end
    return points


def borda_ranking(experiments: Sequence[Experiment]) -> Ranking:
    """Rank ``experiments`` by the Borda count of the module docstring."""
    unranked = {
        e.name: "no fad, clap or ccs (evaluate not run, or failed)"
        for e in experiments
        if all(_value(e.values.get(m)) is None for m in METRICS)
    }
    rankable = [e for e in experiments if e.name not in unranked]
    cleaned = [Experiment(e.name, e.rev, {m: _value(e.values.get(m)) for m in METRICS}) for e in rankable]
    per_metric = {m: metric_points([e.values[m] for e in cleaned], better) for m, better in METRICS.items()}
    scored = [
        (e, {m: per_metric[m][i] for m in METRICS}, sum(per_metric[m][i] for m in METRICS))
        for i, e in enumerate(cleaned)
    ]
    scored.sort(key=lambda item: (-item[2], item[0].name))
    ranked, previous = [], None
    for position, (e, points, borda) in enumerate(scored, start=1):
        rank = ranked[-1].rank if previous is not None and borda == previous else position
        ranked.append(Ranked(e, points, borda, rank))
        previous = borda
    return Ranking(ranked, unranked)


def format_table(ranking: Ranking, width: int = TABLE_WIDTH) -> str:
    """The ranking as a fixed-width text table no wider than ``width`` columns."""
    name_width = max(12, min(40, width - 65))  # the other columns take 65
    header = (
        f"{'rank':>4}  {'experiment':<{name_width}}  {'rev':<7}  {'FAD':>9} {'pts':>4}  {'CLAP':>7} {'pts':>4}  "
        f"{'CCS':>6} {'pts':>4}  {'Borda':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in ranking.ranked:
        v, p = r.experiment.values, r.points
        name = r.experiment.name
        if len(name) > name_width:
            name = name[: name_width - 1] + "~"
        lines.append(
            f"{r.rank:>4}  {name:<{name_width}}  {r.experiment.rev[:7] or '-':<7}  {_cell(v['fad'], 9, 4)} "
            f"{p['fad']:>4g}  {_cell(v['clap'], 7, 4)} {p['clap']:>4g}  {_cell(v['ccs'], 6, 3)} {p['ccs']:>4g}  "
            f"{r.borda:>5g}"
        )
    for name, reason in ranking.unranked.items():
        lines.append(f"{'-':>4}  {name[:name_width]:<{name_width}}  not ranked: {reason}"[:width])
    return "\n".join(line[:width] for line in lines)


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
