"""Cache keys are decisions, not accidents: the cell and search keys of a set of reference cells are pinned in
``tests/expected_keys.json``. A change that moves a key (a new input to a key, a profile's number, a method's
default) fails here; the commit that makes it regenerates the file and says why in its message:

    python tests/test_keys.py    # rewrites tests/expected_keys.json

The data set is a fixed identity (no files behind it) and the CPU's name is fixed, so the keys do not depend on
the machine; every registered method appears, on each family it handles, under a FLOPs limit of its table and,
where it has one, a CPU-latency limit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPECTED = Path(__file__).with_name("expected_keys.json")
FLOPS = {"mobilenet_v1": 150e6, "mobilenet_v2": 150e6, "resnet50": 2e9}
CPU_NAME = "Reference CPU @ 2.00GHz"


def _data():
    from repro.dataset import PreparedData

    manifest = {"classes": [f"c{i}" for i in range(16)], "base_resolution": 64,
                "listing_sha256": {"train": "0" * 64, "val": "1" * 64},
                "betons": {"train": {"quick_sha256": "2" * 64}, "val": {"quick_sha256": "3" * 64}},
                "split": {"seed": 0, "per_class": 50}}
    return PreparedData(Path("."), manifest, np.arange(4), np.arange(4))


def reference_keys() -> dict[str, dict[str, str]]:
    """``profile/method/variant/family/constraint`` -> its cell key and search key."""
    import repro.cost.latency.settings as latency_settings
    from repro.constraint import Constraint
    from repro.cost.latency import device_key
    from repro.discover import load_methods
    from repro.pipeline import cell_key
    from repro.profiles import load_profile

    environment = latency_settings.environment
    latency_settings.environment = lambda s: {**environment(s), "device_name": CPU_NAME}
    try:
        from repro.config import to_mapping
        from repro.method import search_key

        out = {}
        data = _data()
        for profile_name in ("smoke", "imagenet"):
            profile = load_profile(profile_name)
            for name, cls in sorted(load_methods().items()):
                if not cls.__module__.startswith(("baselines.", "repro.")):
                    continue  # a method a test registers (tests/example_method.py)
                method = cls()
                for family in method.families:
                    limits = [Constraint("flops", FLOPS[family])]
                    if "cpu_latency" in method.constraint_kinds:
                        limits.append(Constraint("cpu_latency", 0.5))
                    for constraint in limits:
                        variant = method.variants[-1]
                        latency = (device_key(profile.latency.settings_for(constraint.kind))
                                   if constraint.is_latency else None)
                        cfg = to_mapping(method.config(profile.methods, family))
                        label = f"{profile_name}/{name}/{variant}/{family}/{constraint.kind}:{constraint.limit:g}"
                        out[label] = {
                            "cell": cell_key(name, variant, family, constraint, profile, 0, data),
                            "search": search_key(name, variant, family, constraint, cfg, profile, 0, data, latency)}
        return out
    finally:
        latency_settings.environment = environment


def test_the_keys_of_the_reference_cells_are_the_committed_ones():
    expected = json.loads(EXPECTED.read_text())
    got = reference_keys()
    changed = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    assert not changed, (f"{len(changed)} reference keys changed (first: {changed[0]}): if deliberate, run "
                         f"`python tests/test_keys.py` and say why in the commit message")
    assert sorted(expected) == sorted(got), "the reference cells changed: run `python tests/test_keys.py`"


if __name__ == "__main__":
    EXPECTED.write_text(json.dumps(reference_keys(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED}")
