"""``python -m repro …``: the suite's command line.

Subcommands so far:

* ``flops``: MACs (exact and scaled conventions) and parameters of an ArchConfig, given as a JSON file or
  as ``--family F --width W --resolution R``.
"""

from __future__ import annotations

import argparse
import json
import sys

from repro.arch import FAMILIES, ArchConfig
from repro.cost.flops import count_macs, count_macs_scaled, count_params, format_macs


def _flops(args: argparse.Namespace) -> int:
    if args.arch is not None:
        if args.family or args.width is not None or args.resolution is not None:
            raise ValueError("give either an ArchConfig JSON file or --family/--width/--resolution, not both")
        arch = ArchConfig.load(args.arch)
    else:
        if args.family is None:
            raise ValueError("give an ArchConfig JSON file or --family (one of: " + ", ".join(FAMILIES) + ")")
        arch = ArchConfig.uniform(args.family, 1.0 if args.width is None else args.width,
                                  224 if args.resolution is None else args.resolution, rule=args.rule)
    macs, scaled, params = count_macs(arch), count_macs_scaled(arch), count_params(arch)
    if args.json:
        print(json.dumps({"family": arch.family, "resolution": arch.resolution, "macs": macs,
                          "macs_scaled": scaled, "params": params, "arch": arch.to_dict()}))
    else:
        print(f"{arch.family} at {arch.resolution}px, 1000 classes (conv + linear multiply-accumulates)")
        print(f"  MACs exact   {format_macs(macs):>10}  ({macs:,})")
        print(f"  MACs scaled  {format_macs(scaled):>10}  (MACs at 224 x (r/224)^2, the paper's convention)")
        print(f"  params       {params / 1e6:>9.3f}M  ({params:,})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro", description="Architecture hyperparameter "
                                "optimization reproduction suite.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flops", help="MACs and parameters of an architecture")
    f.add_argument("arch", nargs="?", help="an ArchConfig JSON file")
    f.add_argument("--family", choices=FAMILIES)
    f.add_argument("--width", type=float, help="uniform width multiplier (default 1.0)")
    f.add_argument("--resolution", type=int, help="input resolution in pixels (default 224)")
    f.add_argument("--rule", default="floor", help="width rounding for --width: floor | nearest | divisible8")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=_flops)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
