"""The demo's neural models under two sets of settings, side by side in one run.

Issue 21 point 1: ``histexpr demo`` within minutes, each neural row's MSE within 2 %
of the README table or better. This trains the demo's neural kinds (ensemble,
atlas-convnet) on the demo data exactly as ``histexpr demo`` does
(:func:`histexpr.workflows.experiment.run_experiment`, one kind at a time, into a
temporary run directory), once with the ``--old`` settings and once with the
``--new`` ones (default: the demo's current :data:`histexpr.workflows.demo.DEMO_NEURAL`),
alternating old and new per kind so that both see the same load. Prints per kind and
setting the training seconds and the MSE of each evaluation group, then new / old
ratios (time and MSE). The machine's load average is printed before and after.

    PYTHONPATH=src python benchmarks/bench_demo.py
    PYTHONPATH=src python benchmarks/bench_demo.py --kinds ensemble --new "epochs=6;schedule=onecycle"
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

#: The demo's neural settings before issue 21 point 1 (the baseline of the comparison).
OLD = "channels=32,32,64,64,128,128,256,256;epochs=12;patience=4;batch_size=256"
GROUPS = ("seen/new", "unseen/known", "unseen/new")


def settings(text: str) -> tuple[str, ...]:
    """``a=1;b=2`` (``;`` between settings: a value may hold commas) -> ("a=1", "b=2")."""
    return tuple(s.strip() for s in text.split(";") if s.strip())


def run_once(data, kind: str, neural: tuple[str, ...], root: Path) -> dict:
    """Train ``kind`` as the demo does; its seconds and MSE per group."""
    from histexpr.workflows.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig(models=(kind,), neural=neural)
    t0 = time.perf_counter()
    result = run_experiment(
        data, root / f"{kind}-{len(os.listdir(root))}", config, log=lambda _: None, progress=False
    )
    wall = time.perf_counter() - t0
    table = result.evaluation.table
    rows = table[table["model"] == kind].set_index("group")
    return {
        "train_s": result.seconds[kind],
        "wall_s": wall,
        **{g: float(rows.loc[g, "mse"]) for g in GROUPS if g in rows.index},
    }


def main(argv=None) -> None:
    from histexpr.workflows.demo import DEMO_NEURAL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="ensemble,atlas-convnet")
    ap.add_argument("--old", default=OLD, help="settings separated by ';' (default: before)")
    ap.add_argument(
        "--new",
        action="append",
        default=[],
        help="settings separated by ';' (repeatable: new1, new2, ...; default: the demo's now)",
    )
    ap.add_argument("--skip-old", action="store_true", help="train the new settings only")
    args = ap.parse_args(argv)
    news = args.new or [";".join(DEMO_NEURAL)]

    from histexpr.data.convert import load_dataset
    from histexpr.simulator import default_dataset

    data = load_dataset(default_dataset())
    sets = {"old": settings(args.old)}
    for i, text in enumerate(news):
        sets["new" if len(news) == 1 else f"new{i + 1}"] = settings(text)
    for name, neural in sets.items():
        print(f"{name}: {' '.join(neural)}")
    print(f"load average before: {os.getloadavg()}")
    head = f"{'kind':<14}{'set':<6}{'train s':>9}" + "".join(f"{g:>14}" for g in GROUPS)
    print(head)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            for name, neural in sets.items():
                if name == "old" and args.skip_old:
                    continue
                r = run_once(data, kind, neural, Path(tmp))
                out[kind, name] = r
                print(
                    f"{kind:<14}{name:<6}{r['train_s']:>9.1f}"
                    + "".join(f"{r.get(g, float('nan')):>14.3f}" for g in GROUPS),
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()}")
    print("ratios to old (train s, MSE per group):")
    for kind in args.kinds.split(",") if not args.skip_old else ():
        o = out[kind, "old"]
        for name in list(sets)[1:]:
            n = out[kind, name]
            print(
                f"{kind:<14}{name:<6}{n['train_s'] / o['train_s']:>9.3f}"
                + "".join(f"{n[g] / o[g]:>14.3f}" for g in GROUPS if g in o)
            )


if __name__ == "__main__":
    main()
