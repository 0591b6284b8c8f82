"""Channel surgery on a trained network: which width slot each tensor dimension is, and keeping a subset of a
slot's channels in every tensor that has it.

Every pruning baseline (AMC, NetAdapt, ThiNet, CP, SFP, AutoPruner) ends the same way: for some width slots
of ``repro.arch`` it has chosen which channels to keep, and needs the smaller network with the surviving
weights. ``select_channels(state, arch, keep)`` does that for any family and depth: a copy of the network is
built on the ``meta`` device with width ``MARK + i`` for slot ``i`` (a tied group takes its first slot's
mark), so every channel dimension of every tensor names its slot (``tensor_slots``); a kept subset of slot
``i`` is then an ``index_select`` on every dimension that carries ``i``: the producing convolution's
filters, its BatchNorm, a following depthwise convolution, the consuming convolution's input channels and,
for the last slot, the classifier's columns.

``producers`` / ``consumers`` name the weights that write / read a slot (filter norms, reconstruction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from repro.arch import ArchConfig

MARK = 1 << 20  # channel counts at or above this mark a width slot (tensor_slots)


def marked_network(arch: ArchConfig) -> torch.nn.Module:
    """``arch``'s network (its depths, any widths) on the meta device, with width ``MARK + slot`` for every
    slot (tied slots share their group's first slot): channel dimensions say which slot they are."""
    from repro.models import build_model

    spec = arch.spec
    marks = list(range(MARK, MARK + spec.num_widths))
    for group in spec.ties:
        for i in group:
            marks[i] = MARK + group[0]
    with torch.device("meta"):
        return build_model(arch.replace(widths=tuple(marks)), init=False)


def tensor_slots(arch: ArchConfig) -> dict[str, tuple[int | None, ...]]:
    """For each state-dict tensor of ``build_model(arch)``, the slot of each dimension (None: not a width)."""
    net = marked_network(arch)
    out = {}
    for name, t in [*net.named_parameters(), *net.named_buffers()]:
        out[name] = tuple(d - MARK if d >= MARK else None for d in t.shape)
    return out


def group_of(arch: ArchConfig, slot: int) -> int:
    """The slot that stands for ``slot``'s tie group (its first member), or ``slot`` itself."""
    for group in arch.spec.ties:
        if slot in group:
            return group[0]
    return slot


def _is_depthwise(dims: tuple[int | None, ...], shape: torch.Size) -> bool:
    return len(shape) == 4 and dims[1] is None and shape[1] == 1 and shape[2] * shape[3] > 1


def producers(arch: ArchConfig, slot: int) -> list[str]:
    """Weights of the convolutions whose output channels are ``slot`` (a tied group: all of them)."""
    g = group_of(arch, slot)
    net = marked_network(arch)
    out = []
    for name, t in net.named_parameters():
        dims = tuple(d - MARK if d >= MARK else None for d in t.shape)
        if t.ndim == 4 and dims[0] == g and not _is_depthwise(dims, t.shape):
            out.append(name)
    return out


def consumers(arch: ArchConfig, slot: int) -> list[str]:
    """Weights of the convolutions / linear layers that read ``slot`` as their input channels (dimension 1),
    skipping depthwise convolutions (which carry the slot through unchanged)."""
    g = group_of(arch, slot)
    out = []
    for name, dims in tensor_slots(arch).items():
        if name.endswith("weight") and len(dims) in (2, 4) and dims[1] == g:
            out.append(name)
    return out


def filter_norms(state: Mapping[str, torch.Tensor], arch: ArchConfig, slot: int, p: float = 2.0) -> torch.Tensor:
    """The ``p``-norm of each output filter of ``slot`` (summed over a tied group's producers)."""
    total = None
    for name in producers(arch, slot):
        w = state[name].detach().float()
        n = w.flatten(1).norm(p=p, dim=1)
        total = n if total is None else total + n
    if total is None:
        raise ValueError(f"slot {arch.spec.slots[slot].name} of {arch.family} has no producing convolution")
    return total


def select_channels(state: Mapping[str, torch.Tensor], arch: ArchConfig,
                    keep: Mapping[int, Sequence[int] | torch.Tensor]) -> tuple[ArchConfig, dict[str, torch.Tensor]]:
    """The architecture and state dict of ``arch``'s network keeping, for each slot in ``keep``, the listed
    channel indices (in that order) in every tensor that has the slot. Slots of one tie group must be given
    once (by any member) or with the same indices."""
    chosen: dict[int, torch.Tensor] = {}
    for slot, idx in keep.items():
        if not 0 <= slot < arch.spec.num_widths:
            raise ValueError(f"slot {slot} is outside 0..{arch.spec.num_widths - 1} for {arch.family}")
        idx = torch.as_tensor(idx, dtype=torch.long).flatten()
        width = arch.widths[slot]
        if len(idx) == 0 or int(idx.min()) < 0 or int(idx.max()) >= width or len(set(idx.tolist())) != len(idx):
            raise ValueError(f"keep[{arch.spec.slots[slot].name}] must be distinct channel indices in 0..{width - 1} "
                             f"(at least one); got {idx.tolist()[:8]}{'...' if len(idx) > 8 else ''}")
        g = group_of(arch, slot)
        if g in chosen and not torch.equal(chosen[g], idx):
            raise ValueError(f"slot {arch.spec.slots[slot].name} is tied to {arch.spec.slots[g].name}: give one "
                             f"selection for the group")
        chosen[g] = idx
    widths = list(arch.widths)
    for g, idx in chosen.items():
        members = next((grp for grp in arch.spec.ties if g in grp), (g,))
        for i in members:
            widths[i] = len(idx)
    new_arch = arch.replace(widths=tuple(widths))
    slots = tensor_slots(arch)
    out = {}
    for name, t in state.items():
        dims = slots.get(name)
        if dims is None:
            raise ValueError(f"tensor {name!r} is not part of {arch.family} with depths {list(arch.depths)}")
        for d, s in enumerate(dims):
            if s is not None and s in chosen:
                t = t.index_select(d, chosen[s].to(t.device))
        out[name] = t.clone() if t is state[name] else t
    return new_arch, out


__all__ = ["MARK", "marked_network", "tensor_slots", "group_of", "producers", "consumers", "filter_norms",
           "select_channels"]
