"""Training MetaPruning's PruningNet (``baselines.metapruning_net``) once per family, profile, data and seed:
an artifact with a record of its own (kind ``pruningnet``), resumed from its checkpoint after a crash.

Their ``train.py``: a random encoding per batch (each gene uniform over the scales), cross-entropy with label
smoothing, SGD with momentum, weight decay on the generators' weights, the learning rate decaying linearly
to 0 (MobileNet V1/V2) or in steps of 0.1 at a quarter, half and three quarters of the run (ResNet-50:
``pruningnet_schedule: step``). Here the decay is per step (theirs per epoch) and the rate is scaled with the
batch from theirs.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from repro.method import Artifact, Context

CHECKPOINT, WEIGHTS = "checkpoint.pt", "pruningnet.pt"


def train_pruningnet(family: str, enc, cfg, ctx: Context):
    """(key, trained PruningNet in eval mode) for ``family``; trains it when its record is missing."""

    from repro.config import to_mapping

    recipe = ctx.recipe
    # a step schedule is an input too (the linear one, the only one before, adds nothing: its keys are kept)
    schedule = {} if cfg.pruningnet_schedule == "linear" else {"schedule": [
        cfg.pruningnet_schedule, list(cfg.pruningnet_step_milestones), cfg.pruningnet_step_gamma]}
    key, folder = ctx.artifact_folder("pruningnet", family=family, genes=[list(g) for g in enc.genes],
                                      widest=enc.widest.to_dict(), hidden=cfg.hidden, generator_start="conv-scale",
                                      epochs=cfg.pruningnet_epochs, lr=cfg.pruningnet_lr,
                                      lr_batch=cfg.pruningnet_batch, recipe=to_mapping(recipe), **schedule)
    with ctx.shared.lock(key, f"MetaPruning's PruningNet for {family}"):  # two cells share one PruningNet
        return key, _trained(key, folder, family, enc, cfg, recipe, ctx)


def _trained(key: str, folder, family: str, enc, cfg, recipe, ctx: Context):
    """The PruningNet of ``key`` in eval mode: read back when its record exists, else trained (resumed from its
    checkpoint) and recorded."""
    from dataclasses import replace

    from baselines.metapruning_net import SCALES, PruningNet
    from repro.config import to_mapping
    from repro.data import resize_batch
    from repro.train.subsets import SubsetData
    from repro.train.trainer import (
        build_scheduler,
        load_state,
        make_optimizer,
        make_precision,
        save_checkpoint,
        save_state,
        seed_everything,
        train_step,
    )

    seed_everything(ctx.seed)
    net = PruningNet(enc, ctx.data.num_classes, cfg.hidden)
    data = SubsetData.for_search(ctx)
    net = data.prepare(net)
    if ctx.shared.artifact_done(key):
        net.load_state_dict(torch.load(folder / WEIGHTS, map_location=data.device, weights_only=False)["net"])
        return net.eval()
    steps_per_epoch = len(data.train_loader)
    total = cfg.pruningnet_epochs * steps_per_epoch
    # their recipe: lr at their batch, scaled to ours; linear decay to 0 or steps, no warm-up, no Nesterov
    schedule = replace(recipe, epochs=total, warmup_epochs=0.0, schedule=cfg.pruningnet_schedule, nesterov=False,
                       lr=cfg.pruningnet_lr, lr_reference_batch=cfg.pruningnet_batch,
                       step_milestones=tuple(cfg.pruningnet_step_milestones), step_gamma=cfg.pruningnet_step_gamma)
    optimizer = make_optimizer(net, schedule, 1)
    scheduler = build_scheduler(optimizer, schedule, 1)
    dtype, scaler = make_precision(recipe, data.device)
    parts = {"net": net, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    ckpt, step, earlier = folder / CHECKPOINT, 0, 0.0
    saved = load_state(ckpt, data.device, parts, ctx.log)
    if saved is not None:
        step, earlier = saved["step"], saved["seconds"]
        ctx.log(f"resumed the PruningNet from {ckpt} at step {step} of {total}")
    rng = np.random.default_rng([ctx.seed, step])
    ctx.log(f"training MetaPruning's PruningNet for {family}: {net.generator_params() / 1e6:.1f}M generator "
            f"parameters (hidden {cfg.hidden}), {total} steps ({cfg.pruningnet_epochs} epochs of sub-train)")
    from tqdm import tqdm

    start = time.perf_counter()
    batches = data.train_batches(step)
    losses = []
    bar = tqdm(total=total, initial=step, desc=f"pruningnet {family}", unit="step", disable=True if ctx.quiet else None)
    try:
        while step < total:
            arch = enc.decode(rng.integers(0, len(SCALES), enc.size)).replace(num_classes=ctx.data.num_classes)
            net.set_arch(arch)
            net.train()
            x, y = next(batches)
            x = resize_batch(data.normalize(x), data.resolution(arch.resolution))
            losses.append(float(train_step(net, x, y.to(data.device), optimizer, scaler, recipe.label_smoothing,
                                           dtype)))
            scheduler.step()
            step += 1
            bar.update(1)
            if step % cfg.checkpoint_every == 0 and step < total:
                folder.mkdir(parents=True, exist_ok=True)
                save_state(ckpt, parts, step=step, seconds=earlier + time.perf_counter() - start)
    finally:
        bar.close()
    seconds = earlier + time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / WEIGHTS, net=net.state_dict())
    extra = {"steps": total, "generator_params": net.generator_params(),
             "first_loss": float(np.mean(losses[:20])) if losses else None,
             "last_loss": float(np.mean(losses[-20:])) if losses else None}
    ctx.shared.publish(Artifact(
        kind="pruningnet", key=key, method="metapruning", family=family,
        arch=enc.widest.replace(num_classes=ctx.data.num_classes),
        settings={"metapruning": to_mapping(cfg), "train": to_mapping(recipe)},
        files={"weights": folder / WEIGHTS}, seconds=seconds, epochs=cfg.pruningnet_epochs, extra=extra))
    ckpt.unlink(missing_ok=True)
    ctx.log(f"PruningNet for {family} trained in {seconds:.0f} s; loss {extra['first_loss']} -> "
            f"{extra['last_loss']}")
    return net.eval()


__all__ = ["train_pruningnet"]
