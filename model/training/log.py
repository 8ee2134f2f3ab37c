"""DVCLive logging whose history travels inside the checkpoints, so a resumed run neither loses nor repeats rows.

DVC deletes a stage's non-persistent outputs (``dvclive/``) before running it, and a killed run may have logged
steps past its last checkpoint. So on resume the plot files (``dvclive/plots/metrics/<name>.tsv``, DVCLive's
format: a ``step<TAB><leaf name>`` header, one row per logged step) and ``dvclive/metrics.json`` are rewritten
from the checkpoint's history, which ends exactly at the checkpoint step, and DVCLive continues from there.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# run facts that older checkpoints carry in their history: not restored, DVCLive holds only reproducible values
RUN_FACTS = ("train/steps_per_s",)


class MetricsLog:
    """Rank-0 metric logger: ``log(step, {"train/loss": ...})`` -> DVCLive plots + metrics.json + history."""

    def __init__(self, live_dir: str | os.PathLike):
        self.dir = Path(live_dir)
        self.history: dict[str, list[list[float]]] = {}
        self.summary: dict[str, Any] = {}
        self._live: Any = None

    def start(self, state: dict[str, Any] | None = None) -> None:
        """Open DVCLive: fresh (clearing old plots) when ``state`` is None, else restored from ``state``."""
        from dvclive import Live

        if state is not None:
            self.history = {
                k: [list(r) for r in v] for k, v in state["history"].items() if k not in RUN_FACTS
            }
            self.summary = {k: v for k, v in state["summary"].items() if k not in RUN_FACTS}
            self._rewrite_files()
        # dvcyaml=False: dvc.yaml declares the metrics and plots itself; experiments are saved by `dvc exp run`
        self._live = Live(
            dir=str(self.dir), resume=state is not None, save_dvc_exp=False, dvcyaml=False, report=None
        )

    def log(self, step: int, metrics: dict[str, float], summary_only: dict[str, Any] | None = None) -> None:
        """Append one row per metric at ``step``; ``summary_only`` values go to metrics.json without a plot."""
        if self._live is None:
            raise RuntimeError("MetricsLog.start() must be called before log()")
        self._live.step = step
        for name, value in metrics.items():
            self._live.log_metric(name, float(value))
            self.history.setdefault(name, []).append([step, float(value)])
            self.summary[name] = float(value)
        for name, value in (summary_only or {}).items():
            self._live.log_metric(name, value, plot=False)
            self.summary[name] = value
        self.summary["step"] = step
        self._live.make_summary()

    def log_params(self, params: dict[str, Any]) -> None:
        """Run facts as DVCLive params (``dvclive/params.yaml``, shown by ``dvc exp show``)."""
        if self._live is None:
            raise RuntimeError("MetricsLog.start() must be called before log_params()")
        self._live.log_params(params)

    def end(self) -> None:
        if self._live is not None:
            self._live.end()
            self._live = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": {k: [list(r) for r in v] for k, v in self.history.items()},
            "summary": dict(self.summary),
        }

    def _rewrite_files(self) -> None:
        plots = self.dir / "plots" / "metrics"
        if plots.exists():
            for old in plots.rglob("*.tsv"):
                old.unlink()
        for name, rows in self.history.items():
            path = plots / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh, delimiter="\t", lineterminator=os.linesep)
                writer.writerow(["step", Path(name).name])
                writer.writerows([[int(step), value] for step, value in rows])
        nested: dict[str, Any] = {}
        for name, value in self.summary.items():
            node = nested
            *parents, leaf = name.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "metrics.json").write_text(json.dumps(nested, indent=4) + "\n")
        logger.info("restored %d metric histories into %s", len(self.history), self.dir)
