"""Uniform-rescale baselines of Tables 1-3: *Channel*, *Input image*, *Channel + Input image*, as a method.

Each variant turns a FLOPs limit into one ArchConfig by a declared grid and a declared selection rule: the
rules, and how they were found, are in ``repro.reference`` (a latency column's reference network is the
uniform *Channel* network, so its rule is shared with every latency budget). A uniform row need not meet its
limit (the paper's do not: 343M under 330M, 3.2G under 3G); only searched rows must.

Run ``python -m baselines.uniform --family F --variant V --flops 330M --json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from repro.arch import FAMILIES, ArchConfig
from repro.cost.flops import count_macs, count_macs_scaled, format_macs, parse_macs
from repro.method import Context, Method, SearchResult, Work
from repro.reference import RULES, VARIANTS, candidates, reference_arch, uniform_arch
from repro.registry import register


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m baselines.uniform", description=__doc__.split("\n")[0])
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--flops", required=True, help="the limit in MACs, e.g. 330M, 1.1G")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        arch = uniform_arch(args.family, args.variant, parse_macs(args.flops))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    macs, scaled = count_macs(arch), count_macs_scaled(arch)
    if args.json:
        print(json.dumps({"family": arch.family, "variant": args.variant, "limit_macs": parse_macs(args.flops),
                          "arch": arch.to_dict(), "macs": macs, "macs_scaled": scaled}))
    else:
        print(f"{args.family} {args.variant} for {args.flops}: resolution {arch.resolution}, "
              f"MACs {format_macs(macs)} exact, {format_macs(scaled)} scaled")
        print(arch.to_json())
    return 0



@register
class Uniform(Method[None]):
    """The uniform-rescale rows as a Method: no search, the rule's network, trained from scratch."""

    name = "uniform"
    variants = VARIANTS
    retrain = "scratch"
    constraint_kinds = ("flops", "gpu_latency", "cpu_latency")
    distributed = True  # nothing to search: any process count gives the same network

    def cheapest(self, family: str, variant: str, config: None) -> ArchConfig | None:
        """The smallest network of the variant's grid."""
        return candidates(family, variant)[0][0][0]

    def work(self, family: str, variant: str, config: None, profile, fraction: float) -> list[Work]:
        return []  # no search: the retraining is the cell

    def search(self, ctx: Context[None]) -> SearchResult:
        family, variant, constraint = ctx.family, ctx.variant, ctx.constraint
        if not constraint.is_latency:
            arch = uniform_arch(family, variant, constraint.limit)
        elif variant == "channel":  # a latency column's baseline is the reference network itself
            arch = reference_arch(family, constraint.limit)
        else:
            raise ValueError(f"uniform {variant!r} has no latency form: a latency column's uniform row is the "
                             f"Channel reference at {constraint.limit:g}x")
        return SearchResult(arch, info={"rule": asdict(RULES[family])})


if __name__ == "__main__":
    sys.exit(main())
