"""The engine: profiles, run records, the method registry, training with checkpoints and exact resume,
DDP equivalence, BatchNorm recalibration, the bf16 path, and the cached cell pipeline."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_data
from torch import nn

from data_prep import tiny
from repro.arch import ArchConfig
from repro.config import ConfigError
from repro.constraint import Constraint
from repro.discover import get_method
from repro.keys import input_key
from repro.method import Method
from repro.models import build_model
from repro.profiles import TrainConfig, load_profile
from repro.registry import REGISTRY, register
from repro.results import RecordError, RunRecord, load_records, write_record
from repro.train.trainer import CHECKPOINT, TrainData, fit, recalibrate_bn, train_step

ROOT = Path(__file__).resolve().parent.parent


# --- profiles -------------------------------------------------------------------------------------

def test_builtin_profiles_load_and_family_recipes_merge():
    smoke = load_profile("smoke")
    assert smoke.train.epochs == 3 and smoke.train.nesterov is True and smoke.data.source == "tiny"
    imagenet = load_profile("imagenet")
    assert imagenet.train_for("mobilenet_v2").lr == 0.5
    r50 = imagenet.train_for("resnet50")
    assert (r50.epochs, r50.lr, r50.schedule, r50.weight_decay, r50.momentum) == (128, 0.2, "step", 1e-4, 0.9)


def test_depthwise_weights_are_undecayed_where_the_recipe_says_so():
    """MetaPruning's MobileNet scripts decay no depthwise convolution (``decay_depthwise: false`` in the imagenet
    profile, AMC's fine-tune excepted: their optimizer decays everything); BatchNorm and biases never decay."""
    import torch

    from repro.arch import ArchConfig
    from repro.discover import load_methods
    from repro.models import build_model
    from repro.train.loop import param_groups

    model = build_model(ArchConfig.uniform("mobilenet_v1", 0.25))
    depthwise = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    assert len(depthwise) == 13  # one per MobileNet V1 block
    for flag, undecayed in ((True, set()), (False, depthwise)):
        decay, no_decay = param_groups(model, 4e-5, flag)
        assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters() if p.ndim > 1} - undecayed
        assert undecayed <= {id(p) for p in no_decay["params"]} and no_decay["weight_decay"] == 0.0
    imagenet = load_profile("imagenet")
    assert not imagenet.train_for("mobilenet_v1").decay_depthwise and load_profile("smoke").train.decay_depthwise
    assert load_methods()["amc"]().retrain_recipe(imagenet, "mobilenet_v2").decay_depthwise


def test_the_proxy_profile_extends_smoke_and_names_its_data_set():
    smoke, proxy = load_profile("smoke"), load_profile("proxy")
    assert proxy.name == "proxy" and proxy.methods == smoke.methods and proxy.latency == smoke.latency  # inherited
    assert (proxy.data.source, proxy.data.tiny.variant, proxy.data.tiny.train_per_class,
            proxy.data.tiny.val_per_class) == ("tiny", "tiny64f-108-bg", 200, 160)
    # never a set with two classes that the training flips make one (docs/proxy_protocol.md), and the sweep's folder
    assert proxy.data.tiny.variant not in tiny.MIRROR_TWINS
    assert Path(proxy.data.path).name == f"{proxy.data.tiny.variant}-200-160"
    # its own recipe over smoke's, smoke's keys kept where it is silent
    assert (proxy.train.batch_size, proxy.train.lr, proxy.train.lr_reference_batch, proxy.train.epochs,
            proxy.train.nesterov) == (64, 0.05, 64, 8, True)
    r50 = proxy.train_for("resnet50")
    assert (r50.epochs, r50.batch_size, r50.channels_last) == (8, 64, "off")
    assert len(proxy.seeds) == 5
    # smoke's data.tiny defaults are the embedded set's own
    assert (smoke.data.tiny.variant, smoke.data.tiny.train_per_class, smoke.data.tiny.val_per_class) == (
        tiny.DEFAULT_VARIANT, tiny.TRAIN_PER_CLASS, tiny.VAL_PER_CLASS)


def test_extends_merges_mappings_replaces_the_rest_and_refuses_a_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: smoke\nname: a\ntrain: {epochs: 9}\nseeds: [3, 4]\n"
                                     "train_by_family: {resnet50: {lr: 0.2}}\n")
    a = load_profile(tmp_path / "a.yaml")
    assert (a.name, a.train.epochs, a.train.lr, a.seeds) == ("a", 9, 0.1, (3, 4))
    assert (a.train_for("resnet50").lr, a.train_for("resnet50").epochs) == (0.2, 1)  # smoke's 1 epoch kept
    assert load_profile(tmp_path / "a.yaml", ["train.epochs=2"]).train.epochs == 2  # overrides come last
    (tmp_path / "b.yaml").write_text("extends: c.yaml\nname: b\n")  # a path is relative to the file
    (tmp_path / "c.yaml").write_text("extends: b.yaml\nname: c\n")
    with pytest.raises(ConfigError, match=r"profile b.yaml extends itself \(b.yaml -> c.yaml -> b.yaml\)"):
        load_profile(tmp_path / "b.yaml")
    (tmp_path / "d.yaml").write_text("extends: smokey\nname: d\n")
    with pytest.raises(ConfigError, match="profile 'smokey' is not known"):
        load_profile(tmp_path / "d.yaml")


@pytest.mark.parametrize("overrides, message", [
    (["train.epochs=three"], r"train.epochs='three' must be an integer"),
    (["train.nesterov=yes please"], r"train.nesterov='yes please' must be true or false"),
    (["train.colour=red"], r"unknown key\(s\) train.colour"),
    (["train.schedule=exp"], r"train.schedule='exp' is not allowed; choose one of 'cosine', 'linear', 'step'"),
    (["train.crop_scale=[0.5, 0.2]"], r"train.crop_scale=\[0.5, 0.2\] must satisfy"),
    (["epochs=3"], r"unknown key\(s\) epochs"),
    (["train.epochs"], r"must look like section.key=value"),
    (["train_by_family.vgg.lr=1"], r"train_by_family.vgg: not a family"),
    (["data.tiny.val_per_class=0"], r"data.tiny.val_per_class=0 must be at least 1"),
    (["data.source=null", "data.tiny.train_per_class=10"], r"data.tiny says how the embedded set is made, but "
                                                           r"data.source=None"),
])
def test_profile_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", overrides)


def test_overrides_are_typed():
    p = load_profile("smoke", ["--train.epochs=3", "train.lr=0.05", "train.nesterov=false", "seeds=[0, 1, 2]"])
    assert (p.train.epochs, p.train.lr, p.train.nesterov, p.seeds) == (3, 0.05, False, (0, 1, 2))
    with pytest.raises(ConfigError, match="profile 'nope' is not known"):
        load_profile("nope")


# --- records ---------------------------------------------------------------------------------------

def _record(key="k1", **changes):
    base = dict(key=key, kind="cell", method="uniform", variant="channel", family="mobilenet_v1",
                constraint={"kind": "flops", "limit": 3.3e8}, arch={}, profile="smoke", profile_config={},
                dataset={}, seed=0, top1=0.5, macs=325400448)
    base.update(changes)
    return RunRecord(**base)


def test_records_round_trip_and_load_as_frame(tmp_path):
    write_record(tmp_path, _record("a"))
    write_record(tmp_path, _record("b", top1=0.25))
    frame, bad = load_records(tmp_path)
    assert sorted(frame["top1"]) == [0.25, 0.5] and bad == []
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files


def test_bad_record_is_named_and_can_be_skipped(tmp_path):
    write_record(tmp_path, _record("a"))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(RecordError, match="broken.json"):
        load_records(tmp_path)
    frame, bad = load_records(tmp_path, skip_bad=True)
    assert len(frame) == 1 and len(bad) == 2 and any("foreign.json" in b for b in bad)


def test_input_key_ignores_dict_order():
    assert input_key(a=1, b={"x": 1, "y": 2}) == input_key(b={"y": 2, "x": 1}, a=1)
    assert input_key(a=1) != input_key(a=2)


# --- registry --------------------------------------------------------------------------------------

def test_registry_refuses_duplicates_and_unknown_names():
    assert "uniform" in REGISTRY or get_method("uniform")

    class Twin(Method):
        name = "uniform"
        variants = ("channel",)

    with pytest.raises(ValueError, match="already registered"):
        register(Twin)
    with pytest.raises(ValueError, match="method 'nope' is not registered"):
        get_method("nope")
    with pytest.raises(ValueError, match="has no variant 'depth'"):
        get_method("uniform").check("depth")
    with pytest.raises(ValueError, match="constraint kind='memory'"):
        Constraint("memory", 1.0)


# --- training --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("engine-data"), seed=2, train_per_class=6, per_class=2)


RECIPE = TrainConfig(epochs=2, batch_size=16, lr=0.05, lr_reference_batch=16, warmup_epochs=0.5,
                     checkpoint_every_steps=2, eval_batch_size=64, crop_scale=(0.35, 1.0))
ARCH = ArchConfig.uniform("mobilenet_v1", 0.25, resolution=112, num_classes=len(tiny.CLASSES))


def _train_data(folder: Path) -> TrainData:
    return TrainData(folder / "train.beton", folder / "val.beton", len(tiny.CLASSES), tiny.BASE_RESOLUTION,
                     workers=2)


def _fit(folder, ckpt, **kw):
    torch.manual_seed(0)
    model = build_model(ARCH)
    out = fit(model, _train_data(folder), RECIPE, 0, ARCH.resolution, ckpt, torch.device("cpu"),
              log=lambda s: None, **kw)
    return model, out


def test_resume_after_a_kill_ends_with_the_same_weights(tiny_data, tmp_path):
    """A run killed (SIGKILL) mid-epoch resumes from its last checkpoint and ends bitwise equal to an
    uninterrupted run with the same seed (deterministic CPU kernels, seeded augmentation)."""
    reference, ref_out = _fit(tiny_data, tmp_path / "uninterrupted")
    assert ref_out["resumed"] is None and ref_out["epochs"] == 2
    ckpt = tmp_path / "killed"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r});"
              f"from pathlib import Path; import test_engine as t; t._fit(Path({str(tiny_data)!r}), "
              f"Path({str(ckpt)!r}), step_delay=0.5)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    state = None
    while time.time() < deadline and proc.poll() is None:
        if (ckpt / CHECKPOINT).exists():
            state = torch.load(ckpt / CHECKPOINT, weights_only=False)
            if state["epoch"] == 0 and state["step"] >= 2:
                break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state is not None and state["epoch"] == 0 and 0 < state["step"] < 6, "the run was not caught mid-epoch"
    resumed, out = _fit(tiny_data, ckpt)
    assert out["resumed"] is not None and out["resumed"]["epoch"] == 0
    # the record's training time counts the interrupted part too, not only the resumed one
    assert out["train_seconds"] > out["resumed"]["seconds_before"] > 0
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert out["top1"] == ref_out["top1"]


def test_ema_keeps_the_averaged_weights_and_resumes_exactly(tiny_data, tmp_path):
    """With train.ema_decay the kept (and evaluated) weights are the moving average, not the last step's; a
    run stopped mid-epoch resumes its average from the checkpoint and ends equal to an uninterrupted one."""
    import dataclasses

    with pytest.raises(ConfigError, match="ema_decay=1.0"):
        dataclasses.replace(RECIPE, ema_decay=1.0)
    recipe = dataclasses.replace(RECIPE, ema_decay=0.5)

    def run(ckpt, **kw):
        torch.manual_seed(0)
        model = build_model(ARCH)
        out = fit(model, _train_data(tiny_data), recipe, 0, ARCH.resolution, ckpt, torch.device("cpu"),
                  log=lambda s: None, **kw)
        return model, out

    plain, _ = _fit(tiny_data, tmp_path / "plain")
    averaged, out = run(tmp_path / "ema")
    assert 0 <= out["top1"] <= 1
    pairs = zip(plain.state_dict().values(), averaged.state_dict().values(), strict=True)
    differs = [not torch.equal(a, b) for a, b in pairs]
    assert sum(differs) > len(differs) // 2  # same trajectory, but the average is kept
    assert run(tmp_path / "stopped", stop_after_steps=3)[1]["stopped"]
    resumed, out2 = run(tmp_path / "stopped")
    assert out2["resumed"] is not None
    for (name, a), b in zip(averaged.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_decode_at_base_shares_one_loader_across_resolutions(tiny_data, tmp_path):
    import dataclasses

    from repro.data import loaders

    data = dataclasses.replace(_train_data(tiny_data), decode="base")
    assert (data.resolution(112), data.decode_resolution(112), data.decode_resolution(448)) == (16, 32, 64)
    recipe = dataclasses.replace(RECIPE, epochs=1, checkpoint_every_steps=0)
    logs: list[str] = []
    before = set(loaders._REUSABLE)
    outs = []
    for resolution in (112, 168):  # 16 px and 24 px, both decoded at the base 32 px
        torch.manual_seed(0)
        outs.append(fit(build_model(ARCH.replace(resolution=resolution)), data, recipe, 0, resolution,
                        device=torch.device("cpu"), log=logs.append))
    assert [o["resolution"] for o in outs] == [16, 24]
    assert len(set(loaders._REUSABLE) - before) == 2  # one train and one val loader for both networks
    assert "training at 16px (decoded at 32px and resized)" in logs[0]
    assert all(0 <= o["top1"] <= 1 and o["train_images"] > 0 for o in outs)


def test_bf16_autocast_path_runs_on_cpu(tiny_data, tmp_path):
    seen = []
    torch.manual_seed(0)
    model = build_model(ARCH)
    model.features[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    cfg = TrainConfig(**{**RECIPE.__dict__, "epochs": 1, "amp": "bf16"})
    out = fit(model, _train_data(tiny_data), cfg, 0, ARCH.resolution, None, torch.device("cpu"), log=lambda s: None)
    assert torch.bfloat16 in seen and np.isfinite(out["train_loss"]) and 0 <= out["top1"] <= 1


def test_recalibrate_bn_sets_plain_average_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    batches = [(torch.randint(0, 255, (5, 3, 8, 8), dtype=torch.uint8), torch.zeros(5)) for _ in range(3)]
    from repro.data import Normalize

    normalize = Normalize()
    recalibrate_bn(model, batches, normalize, num_batches=3)
    with torch.no_grad():
        acts = [model[0](normalize(x)) for x, _ in batches]
    means = torch.stack([a.mean(dim=(0, 2, 3)) for a in acts]).mean(0)
    torch.testing.assert_close(model[1].running_mean, means)
    assert model[1].momentum == 0.1 and model.training


def _ddp_step(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)  # as the single-process reference: another thread count sums in another order
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    model, opt, scaler, batches = _ddp_setup()
    ddp = nn.parallel.DistributedDataParallel(model)
    x, y = batches[rank]
    train_step(ddp, x, y, opt, scaler)
    if rank == 0:
        torch.save(model.state_dict(), out)
    torch.distributed.destroy_process_group()


def _ddp_setup():
    torch.manual_seed(0)
    model = build_model(ArchConfig.uniform("mobilenet_v1", 0.25, resolution=32, num_classes=10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen)) for _ in range(2)]
    return model, opt, torch.amp.GradScaler("cpu", enabled=False), batches


def test_two_gloo_ranks_equal_gradient_accumulation(tmp_path):
    """2 DDP processes, one micro-batch each, against one process averaging the gradients of the same two
    micro-batches (BatchNorm statistics per micro-batch, as DDP computes them)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_step, args=(2, f"file://{tmp_path / 'rdv'}", str(tmp_path / "ddp.pt")), nprocs=2, join=True)
    # one thread like the ranks: with the ranks at 2 and this process at 1 (another test module sets it) the
    # first convolution's weights differed by up to 7.6e-6 after the step, past the tolerance on small weights;
    # at equal thread counts they are equal
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, opt, _, batches = _ddp_setup()
        opt.zero_grad()
        for x, y in batches:
            (torch.nn.functional.cross_entropy(model(x), y) / 2).backward()
        opt.step()
    finally:
        torch.set_num_threads(threads)
    ddp_state = torch.load(tmp_path / "ddp.pt")
    for name, value in model.state_dict().items():
        if "running" in name or "num_batches" in name:
            continue  # running statistics: each rank keeps its own micro-batch's
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6, msg=name)


# --- the pipeline ----------------------------------------------------------------------------------

def test_cells_are_cached_and_equal_networks_retrain_once(tiny_data, tmp_path):
    from repro.pipeline import prepare_data, run_cell

    profile = load_profile("smoke", [f"data.path={tiny_data}", "train.epochs=1", "train.batch_size=32",
                                     "train.lr_reference_batch=32"])
    data = prepare_data(profile, log=lambda s: None)
    logs: list[str] = []
    a, ran_a = run_cell("uniform", "channel", "mobilenet_v1", Constraint("flops", 45e6), profile, 0, data,
                        tmp_path, log=logs.append)
    again, ran_again = run_cell("uniform", "channel", "mobilenet_v1", Constraint("flops", 45e6), profile, 0, data,
                                tmp_path, log=logs.append)
    # 44M picks the same 0.25x network: a new cell, the same retraining
    b, ran_b = run_cell("uniform", "channel", "mobilenet_v1", Constraint("flops", 44e6), profile, 0, data,
                        tmp_path, log=logs.append)
    assert (ran_a, ran_again, ran_b) == (True, False, True)
    assert again == a and a.key != b.key
    assert a.artifacts == b.artifacts and a.top1 == b.top1
    assert a.macs == 41_030_272 and a.arch["num_classes"] == 1000 and a.params == 470_072
    frame, _ = load_records(tmp_path / "records")
    assert sorted(frame["kind"]) == ["cell", "cell", "retrain"]
    assert sum("training at" in line for line in logs) == 1


def test_a_cell_with_three_seeds_writes_three_records_and_renders_their_t_interval(tiny_data, tmp_path):
    """End to end: one listed cell run for seeds 0, 1, 2 is three searches and three retrainings, each with its
    own record, and the table shows their mean ± the half-width of scipy's 95% t-interval (n=3)."""
    from scipy import stats

    from repro.pipeline import prepare_data
    from repro.runner import run_one, statuses
    from tables.render import Tolerances, build_view

    profile = load_profile("smoke", [f"data.path={tiny_data}", "train.epochs=4", "train.batch_size=16",
                                     "train.lr_reference_batch=16", "train.warmup_epochs=0", "seeds=0,1,2"])
    data = prepare_data(profile, log=lambda s: None)
    mine = [st for st in statuses(1, profile, data, tmp_path)
            if (st.cell.method, st.cell.variant, st.cell.subtable, st.cell.column) == ("uniform", "channel", "flops",
                                                                                     "45M")]
    assert [st.seed for st in mine] == [0, 1, 2] and len({st.key for st in mine}) == 3
    records = [run_one(st, profile, data, tmp_path, log=lambda s: None, quiet=True)[0] for st in mine]
    frame, _ = load_records(tmp_path / "records")
    assert sorted(frame["kind"]) == ["cell"] * 3 + ["retrain"] * 3  # a seed is its own retraining too
    assert sorted(frame[frame["kind"] == "cell"]["seed"]) == [0, 1, 2]
    pct = [100 * r.top1 for r in records]
    acc = next(r for r in build_view(1, tmp_path / "records", "smoke", Tolerances()).rows
               if (r.subtable, r.method, r.row, r.column) == ("flops", "uniform", "Channel", "45M")).metrics["top1"]
    if len(set(pct)) == 1:  # three equal top-1s (possible on 32 validation images): no interval to compare
        assert acc.n == 3 and acc.ours.startswith(f"{pct[0]:.1f} ± 0.0% (n=3)")
        return
    lo, hi = stats.t.interval(0.95, 2, loc=statistics.mean(pct), scale=stats.sem(pct))
    assert acc.n == 3 and acc.ours_half == pytest.approx((hi - lo) / 2, rel=1e-9)
    assert acc.ours.startswith(f"{statistics.mean(pct):.1f} ± {(hi - lo) / 2:.1f}% (n=3)")


# --- eval and export -------------------------------------------------------------------------------

def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_the_command_line_ends_with_its_code_and_its_output_flushed():
    """``python -m repro`` ends with ``os._exit`` (repro/exit.py: numba's TBB pool can deadlock the interpreter's
    shutdown after a command made a data set): the code and everything printed still come out."""
    out = _cli("flops", "--family", "mobilenet_v1", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["macs"] == 568_740_352
    out = _cli("run-cell", "--method", "x")
    assert out.returncode == 2 and out.stderr.startswith("error: give --table T --index N")
    crash = subprocess.run([sys.executable, "-c", "from repro.exit import run_and_exit; print('before', flush=False);"
                            " run_and_exit(lambda: 1 / 0)"], capture_output=True, text=True, timeout=120)
    assert crash.returncode == 1 and crash.stdout == "before\n" and "ZeroDivisionError" in crash.stderr


def test_export_torchscript_and_onnx_give_the_model(tmp_path):
    import onnx

    arch = ArchConfig.uniform("mobilenet_v2", 0.25, resolution=48, num_classes=7)
    (tmp_path / "a.json").write_text(arch.to_json())
    torch.manual_seed(3)
    model = build_model(arch).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "w.pt")
    out = _cli("export", "--arch", str(tmp_path / "a.json"), "--weights", str(tmp_path / "w.pt"),
               "--out", str(tmp_path / "m.ts"), "--onnx", str(tmp_path / "m.onnx"))
    assert out.returncode == 0, out.stderr
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(tmp_path / "m.ts"))(x), model(x))
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))


def test_eval_reports_accuracy_of_weights(tiny_data, tmp_path):
    arch = ARCH.replace(num_classes=1000)
    (tmp_path / "a.json").write_text(arch.to_json())
    torch.manual_seed(0)
    torch.save({"model": build_model(ARCH).state_dict()}, tmp_path / "w.pt")
    out = _cli("eval", "--arch", str(tmp_path / "a.json"), "--weights", str(tmp_path / "w.pt"), "--data",
               str(tiny_data))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["images"] == 2 * len(tiny.CLASSES) and result["resolution"] == 112 * tiny.BASE_RESOLUTION // 224
    assert 0 <= result["top1"] <= result["top5"] <= 1


def test_run_cell_cli_errors_are_one_line(tmp_path):
    out = _cli("run-cell", "--profile", "smoke", "--train.epochs=zero", "--data.path", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "train.epochs='zero' must be an integer" in out.stderr.strip().splitlines()[-1]
    out = _cli("run-table", "1", "--profile", "nowhere")
    assert out.returncode == 2 and "profile 'nowhere' is not known" in out.stderr


def test_data_option_sets_the_data_folder(tiny_data, tmp_path):
    out = _cli("run-table", "1", "--profile", "smoke", "--list", "--data", str(tiny_data), "--results",
               str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 26 and "(data not prepared)" not in out.stdout and "pending" in lines[0]


def test_top_level_override_reaches_the_profile(tiny_data, tmp_path):
    """``--seeds=0,1,2`` (or ``--seeds=[0,1,2]``) sets the profile's seeds: every cell is listed once per seed."""
    assert load_profile("smoke", ["seeds=0,1,2"]).seeds == (0, 1, 2)
    assert load_profile("smoke", ["--seeds=[4, 5]"]).seeds == (4, 5)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) seed "):
        load_profile("smoke", ["seed=1"])
    out = _cli("run-table", "1", "--profile", "smoke", "--list", "--data", str(tiny_data), "--results",
               str(tmp_path), "--seeds=0,1,2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 * 26 and {line.rsplit(" ", 1)[1] for line in lines} == {"0", "1", "2"}
    out = _cli("run-table", "1", "--list", "--seeds")
    assert out.returncode == 2 and "--seeds=0,1,2" in out.stderr


@pytest.mark.parametrize("flag,value,kind,limit", [("--flops", "150M", "flops", 150e6),
                                                   ("--cpu-latency", "0.5", "cpu_latency", 0.5),
                                                   ("--gpu-latency", "0.75", "gpu_latency", 0.75)])
def test_run_cell_names_any_constraint_kind(monkeypatch, capsys, flag, value, kind, limit):
    import repro.pipeline
    from repro.cli import main

    seen = []
    record = RunRecord(key="k", kind="cell", method="uniform", variant="channel", family="mobilenet_v1",
                       constraint={}, arch={}, profile="smoke", profile_config={}, dataset={}, seed=0, macs=1,
                       top1=0.5)
    monkeypatch.setattr(repro.pipeline, "prepare_data", lambda profile, quiet=False: None)
    monkeypatch.setattr(repro.pipeline, "run_cell", lambda *a, **k: seen.append(a[3]) or (record, True))
    assert main(["run-cell", "--method", "uniform", "--variant", "channel", "--family", "mobilenet_v1", flag,
                 value]) == 0
    assert seen == [Constraint(kind, limit)]
    assert main(["run-cell", "--method", "uniform", "--variant", "channel", "--family", "mobilenet_v1"]) == 2
    assert "one of --flops, --cpu-latency, --gpu-latency" in capsys.readouterr().err
