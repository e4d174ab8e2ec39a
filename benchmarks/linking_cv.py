"""Cross-validation of the linker's defaults across sources: tune on one, report on the others.

Every candidate value of each parameter links every source (GT markers as detections) with classifiers
trained *without* that source's group (HeLa 01, SIM+ 01, synthetic; see ``benchmarks/event_models.py``),
so no score below comes from a movie the linker learned from. For each source the value that scores best
there (mean of LNK, BC(0) and CT; BC(0) left out where the source has no division) is "tuned on" it, and
its scores on every other source are reported next to that source's own best: a default that wins only
where it was chosen shows up as a loss on the others. The default is the value whose worst loss against
the per-source best is smallest; among values within ``TIE`` of that, the one nearest the neutral value.

    python benchmarks/linking_cv.py [--cache-dir /tmp] [--param division.bias ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import event_models
import linkeval
import numpy as np
import pandas as pd
import torch

from celltrack.link import Linker, LinkerConfig

#: Parameters and the values tried (dotted LinkerConfig paths); the first is the neutral one (no
#: adjustment to what the classifiers learned; no rule).
GRID: dict[str, list[object]] = {
    "division.bias": [0.0, 0.5, 1.0, 1.5, 2.0],
    "division.weight": [1.0, 0.5, 2.0],
    "gaps.weight": [1.0, 0.5, 2.0],
    "global_pass.min_branch_length": [0, 2],
}
#: Worst losses closer than this count as ties (less than one division or track on HeLa 01's objective);
#: among tied values the one nearest the neutral value (first in GRID) is the default.
TIE = 0.002


def config_with(path: str, value: object) -> LinkerConfig:
    section, field = path.split(".")
    return LinkerConfig.model_validate({section: {field: value}})


def objective(scores: dict[str, float]) -> float:
    parts = [scores["LNK"], scores["CT"]]
    if np.isfinite(scores["BC(0)"]):
        parts.append(scores["BC(0)"])
    return float(np.mean(parts))


def held_out_models(cache_dir: Path) -> dict[str, dict[str, object]]:
    """Division and join classifiers trained without each source group."""
    models: dict[str, dict[str, object]] = {}
    for kind in ("division", "join"):
        data = event_models.examples(kind, cache_dir / f"{kind}_examples.pkl")
        for group in sorted({event_models.group_of(name) for name, _ in data}):
            keep = lambda name, g=group: event_models.group_of(name) != g  # noqa: E731
            trained_on = sorted({name for name, _ in data if keep(name)})
            models.setdefault(group, {})[f"{kind}_model"] = event_models.fit(kind, data, keep, trained_on)
    return models


def sweep(params: list[str], cache_dir: Path) -> pd.DataFrame:
    models = held_out_models(cache_dir)
    sources = [s for s in (linkeval.load_source(name) for name in linkeval.ALL_SOURCES) if s is not None]
    rows = []
    for path in params:
        for value in GRID[path]:
            for source in sources:
                linker = Linker(config_with(path, value), **models[event_models.group_of(source.name)])
                graph = linker.link(source.detections.drop(columns=["mean_intensity"]), source.frames)
                scores = linkeval.score(graph, source)
                rows.append({"param": path, "value": value, "source": source.name, **scores})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def report(table: pd.DataFrame) -> pd.DataFrame:
    """Per parameter: tuned on each source, tested on each source; and the chosen default."""
    out = []
    table = table.assign(objective=table.apply(objective, axis=1))
    for path, part in table.groupby("param", sort=False):
        wide = part.pivot(index="value", columns="source", values="objective")
        best = wide.max(axis=0)
        for tuned_on in wide.columns:
            value = wide[tuned_on].idxmax()
            for tested_on in wide.columns:
                row = part[(part["value"] == value) & (part["source"] == tested_on)].iloc[0]
                out.append(
                    {
                        "param": path,
                        "tuned on": tuned_on,
                        "value": value,
                        "tested on": tested_on,
                        **{k: row[k] for k in ("LNK", "BC(0)", "CT", "TRA")},
                        "loss vs best there": best[tested_on] - wide.loc[value, tested_on],
                    }
                )
        worst = (best - wide).max(axis=1)
        tied = [value for value in GRID[path] if value in worst.index and worst[value] <= worst.min() + TIE]
        out.append({"param": path, "tuned on": "all (min worst loss)", "value": worst.idxmin(),
                    "loss vs best there": worst.min()})
        out.append({"param": path, "tuned on": "default (tie nearest neutral)", "value": tied[0],
                    "loss vs best there": worst[tied[0]]})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--param", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--cache-dir", default=None, help="folder for the collected classifier examples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path.cwd()
    table = sweep(args.param, cache_dir)
    print()
    print(report(table).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
