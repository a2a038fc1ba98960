"""Training precision and memory format on the CPU: ``TrainerOptions(precision="bf16")`` (autocast) and
``channels_last``, the fp32 checkpoints they write, and the values they refuse."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import tiny_config

from sae.cli import build_parser
from sae.cli import main as sae_main
from sae.training.checkpoint import Checkpoint
from sae.training.options import TrainerOptionError
from sae.training.trainer import Trainer, TrainerOptions

STEPS = 5
BATCH = 8
# bf16 autocast rounds the convolutions' inputs to 8 mantissa bits; the BCE is summed over 12,288 pixels in fp32.
# Over these steps the two runs stay within 0.1% of each other (measured: under 0.05%); a wrong cast (the loss or
# the weights in bf16) moves it by more.
BF16_LOSS_RTOL = 1e-3
# channels_last changes only the order of the sums inside the convolutions.
CHANNELS_LAST_LOSS_RTOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(run_dir, shapes_file, steps: int = STEPS, **options) -> tuple[Trainer, list[float]]:
    """``steps`` steps of sae12-tiny at batch 8 from where the run is; the trainer (checkpoint saved, data closed)
    and the loss of each step."""
    trainer = Trainer(
        tiny_config(batch_size=BATCH),
        shapes_file,
        run_dir,
        device="cpu",
        options=TrainerOptions(tensorboard=False, **options),
    )
    stream = trainer.training_batches()
    trainer.model.train()
    losses = []
    for _ in range(steps):
        losses.append(trainer.train_step(next(stream))["loss"])
        trainer.step += 1
    trainer.save()
    trainer.close()
    return trainer, losses


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes_file):
    """Each variant trained for five steps from the seed, on one torch thread (as ``one_torch_thread``)."""
    root = tmp_path_factory.mktemp("precision")
    variants = {
        "fp32": {"precision": "fp32", "channels_last": False},
        "channels_last": {"precision": "fp32", "channels_last": True},
        "bf16": {"precision": "bf16", "channels_last": False},
        "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: (root / name, *_train(root / name, shapes_file, **opts)) for name, opts in variants.items()}
    finally:
        torch.set_num_threads(threads)


def test_cpu_defaults_are_fp32_and_contiguous(tmp_path, shapes_file):
    trainer = Trainer(
        tiny_config(batch_size=BATCH),
        shapes_file,
        tmp_path / "r",
        device="cpu",
        options=TrainerOptions(tensorboard=False),
    )
    assert (trainer.options.precision, trainer.options.channels_last) == ("fp32", False)
    assert trainer.model.decoder.initial.is_contiguous()
    trainer.close()
    assert TrainerOptions().for_device("cuda").precision == "bf16"
    assert TrainerOptions().for_device("cuda").channels_last is True


@pytest.mark.parametrize("variant", ["bf16", "bf16+channels_last"])
def test_bf16_on_cpu_trains_with_a_falling_loss_close_to_fp32(runs, variant):
    fp32 = np.array(runs["fp32"][2])
    bf16 = np.array(runs[variant][2])
    assert np.isfinite(bf16).all()
    assert bf16[-1] < bf16[0] - 100, bf16  # it learns: the summed BCE falls by hundreds of nats in six steps
    np.testing.assert_allclose(bf16, fp32, rtol=BF16_LOSS_RTOL)
    assert not np.array_equal(bf16, fp32)  # autocast took effect: bf16 rounding shows in the loss


def test_channels_last_gives_the_contiguous_loss(runs):
    trainer = runs["channels_last"][1]
    assert trainer.model.decoder.initial.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(runs["channels_last"][2], runs["fp32"][2], rtol=CHANNELS_LAST_LOSS_RTOL)
    np.testing.assert_allclose(runs["bf16+channels_last"][2], runs["bf16"][2], rtol=BF16_LOSS_RTOL)


@pytest.mark.parametrize("variant", ["fp32", "channels_last", "bf16", "bf16+channels_last"])
def test_checkpoints_hold_fp32_weights_and_record_the_precision(runs, variant):
    run_dir, trainer, _ = runs[variant]
    ckpt = Checkpoint.load(run_dir)
    floats = [t for t in ckpt.model_state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)
    moments = [t for s in ckpt.optimizer_state["state"].values() for t in s.values() if t.is_floating_point()]
    assert moments and all(t.dtype == torch.float32 for t in moments if t.ndim)  # Adam's moments (not its step)
    assert ckpt.extra["precision"] == trainer.options.precision
    assert ckpt.extra["channels_last"] == trainer.options.channels_last


def test_an_interrupted_bf16_channels_last_run_resumes_to_the_same_weights(tmp_path, shapes_file):
    options = {"precision": "bf16", "channels_last": True}
    _train(tmp_path / "whole", shapes_file, steps=4, **options)
    _train(tmp_path / "split", shapes_file, steps=2, **options)
    resumed, _ = _train(tmp_path / "split", shapes_file, steps=2, **options)  # picks up last.pt at step 2
    assert resumed.step == 4
    a, b = Checkpoint.load(tmp_path / "whole"), Checkpoint.load(tmp_path / "split")
    assert a.step == b.step == 4
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)


def test_a_bf16_checkpoint_resumes_in_fp32_and_records_it(tmp_path, shapes_file):
    """The precision is not part of the model: the fp32 master weights carry on under either setting."""
    _train(tmp_path / "r", shapes_file, steps=2, precision="bf16")
    trainer, losses = _train(tmp_path / "r", shapes_file, steps=1, precision="fp32")
    assert trainer.step == 3 and np.isfinite(losses).all()
    assert Checkpoint.load(tmp_path / "r").extra["precision"] == "fp32"


@pytest.mark.parametrize(
    "options,message",
    [
        ({"precision": "fp16"}, "precision 'fp16' is not supported; use one of fp32, bf16"),
        ({"precision": "BF16"}, "use one of fp32, bf16"),
        ({"channels_last": "yes"}, "channels_last must be True, False or None"),
        ({"channels_last": 1}, "channels_last must be True, False or None"),
    ],
)
def test_bad_option_values_are_refused(tmp_path, shapes_file, options, message):
    with pytest.raises(ValueError, match=message):
        TrainerOptions(**options).validate()
    with pytest.raises(TrainerOptionError, match=message):
        Trainer(
            tiny_config(batch_size=BATCH), shapes_file, tmp_path / "r", device="cpu", options=TrainerOptions(**options)
        )
    assert not (tmp_path / "r").exists()


def test_train_flags_parse():
    base = ["train", "sae12-tiny", "--data", "d", "--out", "o"]
    args = build_parser().parse_args(base)
    assert (args.precision, args.channels_last) == (None, None)
    args = build_parser().parse_args([*base, "--precision", "bf16", "--channels-last"])
    assert (args.precision, args.channels_last) == ("bf16", True)
    args = build_parser().parse_args([*base, "--precision", "fp32", "--no-channels-last"])
    assert (args.precision, args.channels_last) == ("fp32", False)


def test_bad_precision_flag_exits_2(tmp_path, capsys):
    argv = ["train", "sae12-tiny", "--data", "d.h5", "--out", str(tmp_path / "o"), "--precision", "fp16"]
    assert sae_main(argv) == 2
    assert "argument --precision: invalid choice: 'fp16'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sae_train_with_bf16_and_channels_last_records_them(tmp_path, shapes_file, capsys):
    argv = [
        "train",
        "sae12-tiny",
        "--data",
        str(shapes_file),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--batch-size",
        str(BATCH),
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--channels-last",
    ]
    assert sae_main(argv) == 0
    assert "(bf16, channels_last)" in capsys.readouterr().out
    extra = Checkpoint.load(tmp_path / "run").extra
    assert (extra["precision"], extra["channels_last"]) == ("bf16", True)


def test_throughput_benchmark_measures_the_variants_side_by_side(shapes_file):
    from benchmarks.train_throughput import compare, parse_config, ratio_table

    assert parse_config("sae12-tiny:model.backbone.channels=32").model.backbone.channels == 32
    results = compare(
        "sae12-tiny",
        shapes_file,
        "cpu",
        warmup=0,
        steps=1,
        rounds=2,
        batch_size=BATCH,
        compile=False,
        variants=["fp32", "channels_last", "bf16"],
        quality_steps=6,
    )
    by_variant = {r.variant: r for r in results}
    assert by_variant["fp32"].ratio_vs_fp32 == 1.0 and by_variant["bf16"].precision == "bf16"
    assert by_variant["channels_last"].channels_last and not by_variant["fp32"].channels_last
    assert all(r.timed_steps == 2 and r.images_per_second > 0 and r.quality_steps == 6 for r in results)
    assert abs(by_variant["channels_last"].last_loss_rel_diff_vs_fp32) < CHANNELS_LAST_LOSS_RTOL
    assert abs(by_variant["bf16"].last_loss_rel_diff_vs_fp32) < BF16_LOSS_RTOL
    assert abs(by_variant["bf16"].val_loss_rel_diff_vs_fp32) < 0.01  # six steps on: within 1% (measured: 0.1%)
    table = ratio_table([dataclasses.asdict(r) for r in results])
    assert set(table["sae12-tiny"]) == {"fp32", "channels_last", "bf16"}
