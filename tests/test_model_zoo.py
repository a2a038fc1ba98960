"""The model zoo: every model kind of the paper on the shared backbone, its named configs and the trainer contract.

Paper-size models are only built here (cheap); their forward and backward passes are in the ``slow`` tests at the
end. Everything that runs a model uses the ``-tiny`` twins.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from sae.training.config import DATASET_KINDS, NAMED_CONFIGS, ExperimentConfig, ModelConfig, TrainConfig, get_config
from sae.training.models.autoencoder import count_parameters
from sae.training.models.registry import model_kind, model_kinds
from sae.training.models.zoo import build_model
from sae.training.models.zoo.betatcvae import BetaTCVAEConfig
from sae.training.models.zoo.factorvae import FactorVAEConfig
from sae.training.models.zoo.vae import VariationalConfig
from sae.training.models.zoo.wae import WAEConfig

TINY_CONFIGS = sorted(n for n in NAMED_CONFIGS if n.endswith("-tiny"))
ONE_TINY_PER_KIND = {
    "sae": "sae12-tiny",
    "adaae": "adaae12-tiny",
    "ae": "ae-tiny",
    "vae": "vae-tiny",
    "betavae": "betavae-tiny",
    "betatcvae": "betatcvae-tiny",
    "factorvae": "factorvae-tiny",
    "wae": "wae-tiny",
    "vlae": "vlae12-tiny",
}
BUILT_IN_KINDS = model_kinds()  # at collection, before any test registers a kind of its own
PAPER_MODELS_64 = [
    "sae2",
    "sae3",
    "sae4",
    "sae6",
    "sae12",
    "adaae12",
    "ae",
    "vae",
    "betavae",
    "betatcvae",
    "factorvae",
    "wae",
    "vlae12",
]
PAPER_MODELS_CELEBA = ["sae16", "adaae16", "ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "vlae16"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------
# Named configs
# ----------------------------------------------------------------------------------------------------------------
def test_named_configs_cover_every_model_on_every_dataset_of_the_paper():
    for dataset, models in (
        ("shapes3d", PAPER_MODELS_64),
        ("mpi3d", PAPER_MODELS_64),
        ("celeba", PAPER_MODELS_CELEBA),
        ("rfd", PAPER_MODELS_CELEBA),
    ):
        for model in models:
            cfg = get_config(f"{model}-{dataset}")
            assert cfg.dataset == dataset and cfg.name == f"{model}-{dataset}"
            assert cfg.model.backbone.image_size == (128 if dataset in ("celeba", "rfd") else 64)
    assert set(ONE_TINY_PER_KIND) == set(BUILT_IN_KINDS), "a CPU-sized twin of every kind"
    assert all(get_config(n).dataset == "shapes3d" for n in TINY_CONFIGS)


def test_sae16_celeba_is_the_papers_celeba_model():
    m = get_config("sae16-celeba").model
    assert (m.kind, m.latent_dim, m.num_variables, m.backbone.channels) == ("sae", 32, 16, 128)
    assert (m.backbone.encoder_blocks, m.backbone.decoder_slots) == (16, 16), "16 blocks on each side"
    assert m.variable_sizes == (2,) * 16


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_every_named_config_round_trips_through_json(name):
    cfg = get_config(name)
    assert ExperimentConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_a_checkpoint_config_from_before_the_zoo_still_loads():
    """Checkpoints written before regulariser/ladder existed have neither key; they mean the defaults."""
    d = json.loads(get_config("sae12-tiny").to_json())
    del d["model"]["regulariser"], d["model"]["ladder"]
    assert ExperimentConfig.from_dict(d) == get_config("sae12-tiny")


@pytest.mark.parametrize("model", PAPER_MODELS_CELEBA)
def test_celeba_configs_train_as_the_authors_did(model):
    """Paper appendix A.2.2 and learn_rep config/d/celeba.yaml: batch 32 for 200k steps."""
    train = get_config(f"{model}-celeba").train
    assert (train.batch_size, train.steps, train.lr) == (32, 200_000, 5e-4)


@pytest.mark.parametrize("model", PAPER_MODELS_CELEBA)
def test_rfd_configs_are_celeba_with_doubled_conv_channels_and_a_tenth_of_the_learning_rate(model):
    celeba, rfd = get_config(f"{model}-celeba"), get_config(f"{model}-rfd")
    assert rfd.model.backbone == dataclasses.replace(celeba.model.backbone, channels=256)
    assert (rfd.model.backbone.image_size, rfd.model.latent_dim) == (128, 32)
    assert rfd.train == dataclasses.replace(celeba.train, lr=celeba.train.lr / 10)
    assert (rfd.train.batch_size, rfd.train.steps, rfd.train.lr) == (32, 200_000, 5e-5)
    assert (
        dataclasses.replace(
            rfd.model, backbone=celeba.model.backbone, ladder=celeba.model.ladder, regulariser=celeba.model.regulariser
        )
        == celeba.model
    )
    if model == "vlae16":
        convs = lambda m: m.ladder.encoder_rung_convs  # noqa: E731
        assert convs(rfd.model) == tuple(tuple(2 * c for c in net) for net in convs(celeba.model))


def test_regulariser_defaults_follow_the_issue_and_the_notes():
    assert get_config("vae-shapes3d").model.regulariser == VariationalConfig(beta=1.0)
    assert get_config("betavae-shapes3d").model.regulariser == VariationalConfig(beta=2.0)
    tc = get_config("betatcvae-shapes3d").model.regulariser
    assert (tc.alpha, tc.beta, tc.gamma, tc.minibatch_stratified) == (1.0, 4.0, 1.0, True)
    assert get_config("betatcvae6-shapes3d").model.regulariser.beta == 6.0, "as the authors trained it"
    assert tc.dataset_size == 336_000 and get_config("betatcvae-mpi3d").model.regulariser.dataset_size == 725_760
    assert get_config("betatcvae-rfd").model.regulariser.dataset_size == 725_760, "70% of RFD's 1,036,800"
    assert get_config("factorvae-shapes3d").model.regulariser.gamma == 40.0
    assert get_config("wae-shapes3d").model.regulariser == WAEConfig(weight=10.0, kernel_scale=None)
    assert get_config("sae12-shapes3d").model.regulariser is None


@pytest.mark.parametrize(
    "name,sizes",
    [
        ("sae12-tiny", (1,) * 12),
        ("sae4-tiny", (3,) * 4),
        ("vlae4-tiny", (3,) * 4),
        ("vlae12-shapes3d", (1,) * 12),
        ("adaae12-tiny", (1,) * 12),
        ("vae-tiny", (1,) * 12),
        ("wae-celeba", (1,) * 32),
        ("sae16-celeba", (2,) * 16),
    ],
)
def test_variable_sizes_give_the_banks_partition(name, sizes):
    assert get_config(name).model.variable_sizes == sizes


# ----------------------------------------------------------------------------------------------------------------
# Parameter counts (built, never run)
# ----------------------------------------------------------------------------------------------------------------
def _main_parameters(name: str) -> int:
    return count_parameters(build_model(get_config(name).model), auxiliary=False)


def test_vlae12_is_the_largest_64px_model():
    counts = {m: _main_parameters(f"{m}-shapes3d") for m in PAPER_MODELS_64}
    assert max(counts, key=counts.get) == "vlae12", counts


def test_vlae12_has_the_papers_size():
    """Paper A.2.1: every 3D-Shapes model has about 1-1.2M parameters, VLAEs the most, SAEs about 5% fewer."""
    vlae, sae = _main_parameters("vlae12-shapes3d"), _main_parameters("sae12-shapes3d")
    assert 1.2e6 <= vlae <= 1.35e6, vlae
    assert vlae > sae and 0.03 <= 1 - sae / vlae <= 0.07, (vlae, sae)


@pytest.mark.parametrize("model", PAPER_MODELS_CELEBA)
def test_celeba_models_have_about_6_to_7_million_parameters(model):
    assert 6.0e6 <= _main_parameters(f"{model}-celeba") <= 7.5e6


def test_factorvae_discriminator_is_the_notes_mlp_and_counted_apart():
    model = build_model(get_config("factorvae-shapes3d").model)
    linear = [m for m in model.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(12, 1000), (1000, 1000), (1000, 1000), (1000, 2)]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.discriminator.modules())
    assert count_parameters(model, auxiliary=False) == _main_parameters("vae-shapes3d")
    assert count_parameters(model) > count_parameters(model, auxiliary=False) + 2_000_000


# ----------------------------------------------------------------------------------------------------------------
# The contract: encode / decode / training_loss / auxiliary modules / prior samples
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_tiny_training_loss_is_finite_and_reaches_every_trained_parameter(name):
    torch.manual_seed(0)
    model = build_model(get_config(name).model)
    loss, terms = model.training_loss(_batch(4))
    assert loss.dim() == 0 and torch.isfinite(loss) and "reconstruction" in terms
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values()), terms
    loss.backward()
    grads = [p.grad for p in model.main_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.decoder.head[-1].weight.grad.abs().sum() > 0
    if not model.cfg.structured:  # (a fresh SAE's Str-Tfms are the identity: no gradient reaches its encoder yet)
        assert model.encoder.blocks[0].conv.weight.grad.abs().sum() > 0, "the loss reaches the first encoder conv"
    for aux in model.auxiliary_modules().values():
        assert all(p.grad is None for p in aux.parameters()), "the main loss leaves auxiliary modules alone"


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_encode_is_deterministic_and_decode_gives_image_logits(name):
    model = build_model(get_config(name).model).eval()
    x = _batch(3)
    with torch.no_grad():
        z1, z2 = model.encode(x), model.encode(x)
        logits = model.decode(z1)
    assert z1.shape == (3, 12) and torch.equal(z1, z2)
    assert logits.shape == x.shape
    if model.cfg.variational:
        with torch.no_grad():
            assert torch.equal(z1, model.posterior(x)[0]), "encode serves the posterior mean"


def test_kind_capabilities_are_those_of_the_paper():
    """Prior: the VAE family and WAE; chunked latent (hybrid sampling draws k variables): SAE-k and VLAE-k."""

    def having(capability):
        return {k for k in BUILT_IN_KINDS if getattr(model_kind(k), capability)}

    assert having("has_prior") == {"vae", "betavae", "betatcvae", "factorvae", "wae", "vlae"}
    assert having("variational") == {"vae", "betavae", "betatcvae", "factorvae", "vlae"}
    assert having("structured") == {"sae", "adaae"}
    assert having("chunked_latent") == {"sae", "vlae"}
    assert having("places_variables") == {"sae", "adaae", "vlae"}
    assert having("reads_ladder") == {"vlae"}
    assert {k for k in BUILT_IN_KINDS if model_kind(k).min_batch_size == 2} == {"betatcvae", "factorvae", "wae"}


@pytest.mark.parametrize("kind", sorted(BUILT_IN_KINDS))
def test_models_with_a_prior_sample_it_reproducibly(kind):
    model = build_model(get_config(ONE_TINY_PER_KIND[kind]).model)
    if not model_kind(kind).has_prior:
        assert not hasattr(model, "prior_sample")
        return
    a = model.prior_sample(5, generator=torch.Generator().manual_seed(1))
    b = model.prior_sample(5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 12) and torch.equal(a, b)
    assert not torch.equal(a, model.prior_sample(5, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize(
    "name,weights",
    [
        ("vae-tiny", {"kl": 1.0}),
        ("betavae-tiny", {"kl": 2.0}),
        ("vlae12-tiny", {"kl": 1.0}),
        ("betatcvae-tiny", {"mutual_info": 1.0, "total_correlation": 4.0, "dimwise_kl": 1.0}),
        ("factorvae-tiny", {"kl": 1.0, "total_correlation": 40.0}),
        ("wae-tiny", {"mmd": 10.0}),
    ],
)
def test_loss_is_reconstruction_plus_the_configured_weights_times_the_terms(name, weights):
    torch.manual_seed(0)
    model = build_model(get_config(name).model)
    with torch.no_grad():
        loss, terms = model.training_loss(_batch(8))
    assert set(terms) == {"reconstruction", *weights}
    expected = terms["reconstruction"] + sum(w * terms[k] for k, w in weights.items())
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)
    assert all(terms[k] != 0 for k in weights)


def test_regulariser_settings_are_read_from_the_config():
    cfg = get_config("betavae-tiny").model
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(cfg, regulariser=VariationalConfig(beta=7.0)))
    with torch.no_grad():
        loss, terms = model.training_loss(_batch(4))
    assert torch.allclose(loss, terms["reconstruction"] + 7.0 * terms["kl"], rtol=1e-5)


def test_factorvae_discriminator_step_moves_the_discriminator_and_not_the_vae():
    torch.manual_seed(0)
    model = build_model(get_config("factorvae-tiny").model)
    assert set(model.auxiliary_modules()) == {"discriminator"}
    with pytest.raises(RuntimeError, match="training_loss"):
        model.auxiliary_loss("discriminator")
    main = model.main_parameters()
    disc = list(model.discriminator.parameters())
    assert {id(p) for p in main}.isdisjoint(id(p) for p in disc)
    reg = model.cfg.regulariser
    main_opt = torch.optim.Adam(main, lr=1e-3)
    disc_opt = torch.optim.Adam(disc, lr=reg.discriminator_lr, betas=reg.discriminator_betas)

    loss, _ = model.training_loss(_batch(16))
    main_opt.zero_grad()
    loss.backward()
    main_opt.step()
    main_opt.zero_grad(set_to_none=True)
    vae_before = [p.detach().clone() for p in main]
    disc_before = [p.detach().clone() for p in disc]

    aux = model.auxiliary_loss("discriminator")
    assert torch.isfinite(aux) and abs(aux.item() - np.log(2)) < 0.5  # near chance at initialisation
    disc_opt.zero_grad()
    aux.backward()
    disc_opt.step()
    assert all(p.grad is None for p in main), "the discriminator loss sends no gradient into the VAE"
    assert all(torch.equal(a, p) for a, p in zip(vae_before, main))
    assert any(not torch.equal(a, p) for a, p in zip(disc_before, disc))


def test_models_without_auxiliary_modules_say_so():
    model = build_model(get_config("vae-tiny").model)
    assert model.auxiliary_modules() == {}
    with pytest.raises(ValueError, match="vae.*no auxiliary module 'discriminator'"):
        model.auxiliary_loss("discriminator")


def test_vlae_chunk_i_enters_the_decoder_only_through_rung_i():
    torch.manual_seed(0)
    model = build_model(get_config("vlae4-tiny").model)
    with torch.no_grad():
        model.decoder.rungs[2][-1].weight.zero_()
    z = torch.randn(2, 12, requires_grad=True)
    model.decode(z).sum().backward()
    per_chunk = [z.grad[:, 3 * i : 3 * i + 3].abs().sum().item() for i in range(4)]
    assert per_chunk[2] == 0.0 and all(g > 0 for i, g in enumerate(per_chunk) if i != 2), per_chunk


def _linear_shapes(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def _conv_channels(module: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("name,conv_rungs", [("vlae12-shapes3d", 3), ("vlae4-shapes3d", 3), ("vlae2-shapes3d", 2)])
def test_vlae_rungs_are_the_authors(name, conv_rungs):
    """learn_rep config/a/e/ladder/{4,12}.yaml: the shallowest rungs convolve (16→8, 32→32, 32), the deeper ones
    have a linear layer of 128; all end in an MLP with hidden widths 64, 32. Decoder rungs: MLP 64, 128 → 16."""
    model = build_model(get_config(name).model)
    encoder, k = model.encoder, model.cfg.num_variables
    shallow_first = sorted(range(k), key=lambda i: (encoder.rung_after[i], -i))
    expected_convs = [[16, 8], [32, 32], [32]][:conv_rungs] + [[]] * (k - conv_rungs)
    assert [_conv_channels(encoder.rungs[i]) for i in shallow_first] == expected_convs
    for rank, i in enumerate(shallow_first):
        pooled = expected_convs[rank][-1] if expected_convs[rank] else None
        head = [(pooled, 64)] if pooled else [(64, 128), (128, 64)]
        assert _linear_shapes(encoder.rungs[i]) == [*head, (64, 32), (32, 2 * (12 // k))], (rank, i)
    d = 12 // k
    assert all(_linear_shapes(r) == [(d, 64), (64, 128), (128, 16)] for r in model.decoder.rungs)
    extra = [block.conv.in_channels - 64 for block in model.decoder.blocks] + [model.decoder.head[-1].in_channels - 64]
    assert sorted(extra, reverse=True)[:k] == [16] * k and sum(extra) == 16 * k, "16 broadcast features per rung"


@pytest.mark.parametrize("name", ["vlae12-tiny", "vlae4-tiny", "vlae16-celeba"])
def test_smaller_and_larger_vlae_ladders_are_the_authors_scaled(name):
    """The tiny ladder is the paper ladder at half width, the CelebA one at twice the width (as their backbones'
    MLPs are); the structure stays: convs for the three shallowest rungs, a linear layer for the rest."""
    cfg = get_config(name).model
    scale = 0.5 if name.endswith("-tiny") else 2
    model = build_model(cfg)
    shallow_first = sorted(range(cfg.num_variables), key=lambda i: (model.encoder.rung_after[i], -i))
    convs = [_conv_channels(model.encoder.rungs[i]) for i in shallow_first]
    assert convs[:3] == [[int(16 * scale), int(8 * scale)], [int(32 * scale)] * 2, [int(32 * scale)]]
    assert all(c == [] for c in convs[3:])
    deep = model.encoder.rungs[shallow_first[-1]]
    assert _linear_shapes(deep)[:3] == [
        (cfg.backbone.channels, int(128 * scale)),
        (int(128 * scale), int(64 * scale)),
        (int(64 * scale), int(32 * scale)),
    ]


def test_vlae_rungs_pair_deep_encoder_blocks_with_deep_decoder_slots():
    model = build_model(get_config("vlae12-shapes3d").model)
    assert model.encoder.rung_after == list(range(12, 0, -1))
    assert model.decoder.slot_of_variable == list(range(12))
    assert build_model(get_config("vlae4-tiny").model).encoder.rung_after == [6, 5, 3, 2]


# ----------------------------------------------------------------------------------------------------------------
# Training: the loss falls on procedural images
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def procedural_images() -> torch.Tensor:
    from sae.core.datasets.procedural import FACTOR_SIZES, Shapes3DRenderer

    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, s, 16) for s in FACTOR_SIZES], axis=1)
    images = Shapes3DRenderer(64, supersample=1).render(factors)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _loss_at(model, x, seed: int = 123) -> float:
    """The training loss with fixed sampling noise, so two evaluations differ only by the weights."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.training_loss(x)[0].item()


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_tiny_model_loss_falls_under_adam(name, procedural_images):
    cfg = get_config(name)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    main_opt = torch.optim.Adam(model.main_parameters(), lr=cfg.train.lr, betas=cfg.train.betas)
    aux_opts = {n: torch.optim.Adam(m.parameters(), lr=1e-4) for n, m in model.auxiliary_modules().items()}
    x = procedural_images
    before = _loss_at(model, x)
    for _ in range(4):
        loss, _ = model.training_loss(x)
        main_opt.zero_grad()
        loss.backward()
        main_opt.step()
        for n, opt in aux_opts.items():
            opt.zero_grad()
            model.auxiliary_loss(n).backward()
            opt.step()
    after = _loss_at(model, x)
    print(f"{name}: {before:.1f} -> {after:.1f}")
    assert after < 0.97 * before, (before, after)


# ----------------------------------------------------------------------------------------------------------------
# Export: every kind becomes ONNX graphs that match eager
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(BUILT_IN_KINDS))
def test_every_model_kind_exports_to_onnx_matching_eager(kind, tmp_path):
    from sae.export.graphs import export_onnx, graph_specs, onnx_max_abs_diff

    torch.manual_seed(0)
    model = build_model(get_config(ONE_TINY_PER_KIND[kind]).model).eval()
    for graph, spec in graph_specs(model).items():
        path = tmp_path / f"{graph}.onnx"
        export_onnx(spec, path)
        assert onnx_max_abs_diff(spec, path, batch_sizes=(1, 3)) <= 1e-3, graph


# ----------------------------------------------------------------------------------------------------------------
# Bad configs name the field to change
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad,match",
    [
        (ModelConfig("vqvae", 12, 12), r"ModelConfig\.kind: unknown model kind 'vqvae'"),
        (ModelConfig("sae", 12, 5), r"latent_dim=12 is not divisible by ModelConfig\.num_variables=5"),
        (ModelConfig("vlae", 12, 5), r"ModelConfig\.num_variables=5"),
        (
            ModelConfig("vae", 12, 12, regulariser=WAEConfig()),
            r"ModelConfig\.regulariser: kind 'vae' takes "
            r"VariationalConfig, got WAEConfig",
        ),
        (ModelConfig("ae", 12, 12, regulariser=VariationalConfig()), r"ModelConfig\.regulariser: kind 'ae' takes no"),
        (ModelConfig("betavae", regulariser=VariationalConfig(beta=-1.0)), r"regulariser\.beta=-1\.0"),
        (ModelConfig("factorvae", regulariser=FactorVAEConfig(discriminator_lr=0.0)), "discriminator_lr"),
    ],
)
def test_bad_model_configs_raise_value_error_naming_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model(bad)


def test_bad_experiment_configs_name_the_field():
    tc = ModelConfig("betatcvae", regulariser=BetaTCVAEConfig(dataset_size=100))
    with pytest.raises(ValueError, match=r"dataset_size=100 must exceed TrainConfig\.batch_size - 1 = 127"):
        ExperimentConfig("x", tc).validate()
    with pytest.raises(ValueError, match=r"ExperimentConfig\.dataset: unknown dataset 'cifar'"):
        ExperimentConfig("x", dataset="cifar").validate()
    with pytest.raises(ValueError, match="factorvae.*at least 2"):
        ExperimentConfig("x", ModelConfig("factorvae"), TrainConfig(batch_size=1)).validate()
    d = json.loads(get_config("vae-tiny").to_json())
    d["model"]["kind"] = "vqvae"
    with pytest.raises(ValueError, match=r"ModelConfig\.kind: unknown model kind 'vqvae'"):
        ExperimentConfig.from_dict(d)
    assert DATASET_KINDS == ("shapes3d", "mpi3d", "celeba", "rfd")


# ----------------------------------------------------------------------------------------------------------------
# Paper-size models run forward and backward (slow: about a minute on 2 busy CPU cores in all)
# ----------------------------------------------------------------------------------------------------------------
def _distinct_paper_models() -> dict[str, ModelConfig]:
    """Named configs that build the same model (e.g. ``-shapes3d`` and ``-mpi3d``) are run once, under all names."""
    seen: dict[ModelConfig, list[str]] = {}
    for name in sorted(NAMED_CONFIGS):
        if not name.endswith("-tiny"):
            seen.setdefault(get_config(name).model, []).append(name)
    return {"+".join(names): cfg for cfg, names in seen.items()}


PAPER_MODELS = _distinct_paper_models()


@pytest.mark.slow
@pytest.mark.parametrize("names", sorted(PAPER_MODELS))
def test_paper_size_training_loss_is_finite_and_backpropagates(names):
    cfg = PAPER_MODELS[names]
    torch.manual_seed(0)
    model = build_model(cfg)
    x = _batch(2, cfg.backbone.image_size)
    loss, terms = model.training_loss(x)
    assert torch.isfinite(loss) and all(torch.isfinite(t) for t in terms.values())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.main_parameters())
    with torch.no_grad():
        assert model.decode(model.encode(x[:1])).shape == (1, 3, cfg.backbone.image_size, cfg.backbone.image_size)
