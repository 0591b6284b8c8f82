"""Does the proxy rank architectures the way ImageNet does? Kendall's tau between the proxy top-1 of the
sweep's runs (``scripts/proxy_sweep.py``) and the published ImageNet top-1 of the same architectures: the
paper's uniform rows (Tables 1-3, *Channel*, *Input image* and *Channel + Input image* under FLOPs), whose
networks the suite's uniform rules build (``repro.reference``).

    python scripts/proxy_rank.py --cells mobilenet_v1          # the --cells a sweep needs for them
    python scripts/proxy_rank.py --label v1-400-e6-lr025-w2 --out docs/proxy_rank

The interval is Fieller, Hartley and Pearson's (1957): Fisher's z of tau with variance 0.437 / (n - 4), for
n >= 5 architectures; with fewer it is not computed. Only architectures with proxy runs count.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TABLE_OF_FAMILY = {"mobilenet_v1": 1, "mobilenet_v2": 2, "resnet50": 3}
VARIANT_OF_ROW = {"Channel": "channel", "Input image": "input", "Channel + Input image": "channel+input"}


def uniform_point(family: str, variant: str, limit: float) -> tuple[float, int]:
    """(width multiplier, ImageNet resolution) of the network the family's uniform rule picks for ``limit``."""
    from repro.reference import uniform_pick

    return uniform_pick(family, variant, limit)[1]


def published(family: str) -> list[dict]:
    """The paper's uniform rows of ``family`` with a printed ImageNet top-1, one per distinct network."""
    from repro.cost.flops import parse_macs
    from tables.reported import load_reported

    out: dict[tuple[float, int], dict] = {}
    for c in load_reported():
        if (c.table, c.subtable, c.group, c.metric) != (TABLE_OF_FAMILY[family], "flops", "Uniform rescale baseline",
                                                         "top1") or c.value is None or c.row not in VARIANT_OF_ROW:
            continue
        width, px = uniform_point(family, VARIANT_OF_ROW[c.row], parse_macs(c.column))
        out.setdefault((width, px), {"width": width, "resolution": px, "imagenet_top1": c.value,
                                     "rows": []})["rows"].append(f"{c.row} {c.column}")
    return sorted(out.values(), key=lambda p: (p["width"], p["resolution"]))


def kendall(proxy: list[float], imagenet: list[float]) -> dict:
    from scipy import stats

    n = len(proxy)
    tau, p = stats.kendalltau(proxy, imagenet)
    lo = hi = math.nan
    if n >= 5 and abs(tau) < 1:
        z, half = math.atanh(tau), 1.96 * math.sqrt(0.437 / (n - 4))
        lo, hi = math.tanh(z - half), math.tanh(z + half)
    elif n >= 5:
        lo = hi = tau
    return {"n": n, "tau": float(tau), "p": float(p), "ci95": [lo, hi]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", metavar="FAMILY", help="print the sweep's --cells for FAMILY's published networks")
    p.add_argument("--label", help="the sweep label whose runs are ranked")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    a = p.parse_args()
    if a.cells:
        if a.cells not in TABLE_OF_FAMILY:
            raise SystemExit(f"--cells {a.cells}: not a family ({', '.join(TABLE_OF_FAMILY)})")
        print(" ".join(f"{q['width']:g}@{q['resolution']}" for q in published(a.cells)))
        return
    if not a.label:
        raise SystemExit("give --label (the sweep's runs to rank) or --cells FAMILY")
    runs = [json.loads(f.read_text()) for f in sorted((a.results / "proxy_sweep").glob("*.json"))]
    runs = [r for r in runs if r["label"] == a.label]
    if not runs:
        raise SystemExit(f"no sweep runs labelled {a.label!r} in {a.results / 'proxy_sweep'}")
    lines = [f"Proxy top-1 (sweep label `{a.label}`) against the published ImageNet top-1 of the paper's uniform "
             "rows, per family:", "", "| family | width | px | paper rows | ImageNet top-1 % | proxy top-1 % (seeds) |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for family in sorted({r["family"] for r in runs}):
        pairs = []
        for q in published(family):
            acc = [100 * r["top1"] for r in runs if r["family"] == family and r["width"] == q["width"]
                   and r["resolution"] == q["resolution"]]
            shown = f"{statistics.mean(acc):.1f} ({len(acc)})" if acc else "not run"
            lines.append(f"| {family} | {q['width']:g}x | {q['resolution']} | {'; '.join(q['rows'])} | "
                         f"{q['imagenet_top1']:.1f} | {shown} |")
            if acc:
                pairs.append((statistics.mean(acc), q["imagenet_top1"]))
        if len(pairs) >= 2:
            summary[family] = kendall([x for x, _ in pairs], [y for _, y in pairs])
    lines += ["", "| family | architectures | Kendall's tau | 95% interval | p |", "|---|---|---|---|---|"]
    for family, k in summary.items():
        ci = "n < 5: not computed" if math.isnan(k["ci95"][0]) else f"[{k['ci95'][0]:.2f}, {k['ci95'][1]:.2f}]"
        lines.append(f"| {family} | {k['n']} | {k['tau']:.2f} | {ci} | {k['p']:.3g} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        from repro.atomic import atomic_write_text

        atomic_write_text(a.out.with_suffix(".md"), text)
        atomic_write_text(a.out.with_suffix(".json"), json.dumps({"label": a.label, "kendall": summary}, indent=1))


if __name__ == "__main__":
    main()
