"""Which method and variant each row of the paper's tables is (grows with the table specs)."""

from __future__ import annotations

FAMILY_OF_TABLE = {1: "mobilenet_v1", 2: "mobilenet_v2", 3: "resnet50"}

# (group, row) of the FLOPs sub-tables -> (method, variant)
UNIFORM_ROWS = {
    ("Uniform rescale baseline", "Channel"): ("uniform", "channel"),
    ("Uniform rescale baseline", "Input image"): ("uniform", "input"),
    ("Uniform rescale baseline", "Channel + Input image"): ("uniform", "channel+input"),
    ("Uniform baseline", "Uniform"): ("uniform", "channel"),
}
