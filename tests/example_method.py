from dataclasses import dataclass

from repro.method import Context, Method, SearchResult
from repro.reference import RULES
from repro.registry import register


@dataclass(frozen=True)
class HalfDepthConfig:
    width: float = 1.0  # the uniform width before the depth is halved


@register
class HalfDepth(Method[HalfDepthConfig]):
    """Every stage at half its blocks (at least one), at the widest uniform width that fits the budget."""

    name = "half_depth"
    variants = ("depth",)
    retrain = "scratch"
    config_type = HalfDepthConfig

    def search(self, ctx: Context[HalfDepthConfig]) -> SearchResult:
        rule = RULES[ctx.family]
        for step in range(round(ctx.config.width * 100), 0, -1):
            arch = rule.arch(ctx.family, step / 100)
            arch = arch.replace(depths=tuple(max(1, d // 2) for d in arch.depths))
            if ctx.budget.fits(arch):
                return SearchResult(arch, info={"width": step / 100})
        raise ValueError(f"no width fits {ctx.budget.format(ctx.budget.limit)}")
