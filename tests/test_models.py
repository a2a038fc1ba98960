import dataclasses

import pytest
import torch

from sae.training.config import NAMED_CONFIGS, BackboneConfig, ModelConfig, get_config
from sae.training.models.autoencoder import count_parameters
from sae.training.models.slot_decoder import variable_slices, variable_slots
from sae.training.models.structural import StrTfm
from sae.training.models.zoo import build_model

# The authors' trained models (../shared/notes/paper-architecture.md).
AUTHORS_PARAMETERS = {
    "sae12-shapes3d": 1_221_967,
    "sae6-shapes3d": 1_072_591,
    "sae4-shapes3d": 1_022_799,
    "sae3-shapes3d": 997_903,
    "sae2-shapes3d": 973_007,
    "adaae12-shapes3d": 1_230_415,
    "ae-shapes3d": 1_022_671,
    "vae-shapes3d": 1_024_219,
}
TINY_CONFIGS = sorted(n for n in NAMED_CONFIGS if n.endswith("-tiny"))
SAE_CONFIGS = ["sae2-shapes3d", "sae3-shapes3d", "sae4-shapes3d", "sae6-shapes3d", "sae12-shapes3d", "sae16-celeba"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", sorted(AUTHORS_PARAMETERS))
def test_parameter_count_matches_the_authors(name):
    count = count_parameters(build_model(get_config(name).model))
    assert count == AUTHORS_PARAMETERS[name]  # exact for every one of the eight (computed and checked)


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_every_tiny_config_maps_images_to_logits_of_the_same_shape(name):
    """(The paper-size configs are checked the same way in test_model_zoo.py, marked slow.)"""
    cfg = get_config(name).model
    model = build_model(cfg)
    x = torch.rand(2, 3, cfg.backbone.image_size, cfg.backbone.image_size)
    with torch.no_grad():
        logits, z = model(x)
    assert logits.shape == x.shape and z.shape == (2, cfg.latent_dim)


def test_strtfm_is_the_identity_at_initialisation():
    layer = StrTfm(in_dim=2, channels=8, hidden=(16, 32))
    h, u = torch.randn(3, 8, 4, 4), torch.randn(3, 2)
    assert torch.equal(layer(h, u), h)


@pytest.mark.parametrize("name", ["sae12-tiny", *SAE_CONFIGS, "adaae12-shapes3d", "adaae16-celeba"])
def test_every_strtfm_of_a_fresh_sae_is_the_identity(name):
    model = build_model(get_config(name).model)
    c = model.cfg.backbone.channels
    h = torch.randn(2, c, 4, 4)
    assert len(model.decoder.strtfms) == model.cfg.num_variables
    for i, layer in enumerate(model.decoder.strtfms):
        u = torch.randn(2, layer.mlp[0].in_features)
        assert torch.equal(layer(h, u), h), i


def test_strtfm_scale_is_exp_of_its_raw_output():
    layer = StrTfm(in_dim=1, channels=2, hidden=(4,))
    with torch.no_grad():
        layer.mlp[-1].bias.copy_(torch.tensor([0.5, -1.0, 0.0, 1.0]))  # shift (2), raw scale (2)
    h = torch.ones(1, 2, 3, 3)
    out = layer(h, torch.zeros(1, 1))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.5 + 1.0, -1.0 + torch.e]))
    assert torch.equal(out, out[:, :, :1, :1].expand_as(out)), "the same per-channel transform at every pixel"


@pytest.mark.parametrize(
    "k,slots", [(12, list(range(12))), (6, [0, 2, 4, 6, 8, 10]), (4, [0, 3, 6, 9]), (3, [0, 4, 8]), (2, [0, 6])]
)
def test_strtfm_placement_follows_the_authors(k, slots):
    assert variable_slots(12, k) == slots


def test_strtfm_resolutions_match_the_trained_sae12():
    """The notes list the resolution each Str-Tfm acts at: 2,2,4,4,8,8,8,16,16,16,32,32."""
    model = build_model(get_config("sae12-shapes3d").model)
    seen = []
    for layer in model.decoder.strtfms:
        layer.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[-1]))
    model.decode(torch.zeros(1, 12))
    assert seen == [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32]


def test_strtfm_resolutions_of_sae16_celeba():
    """SAE-16 at 128 px: one Str-Tfm before each of the 16 decoder convs, three per resolution, four at 64."""
    model = build_model(_narrow(get_config("sae16-celeba").model))
    seen = []
    for layer in model.decoder.strtfms:
        layer.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[-1]))
    assert model.decode(torch.zeros(1, 32)).shape == (1, 3, 128, 128)
    assert seen == [4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64]


def _narrow(cfg: ModelConfig) -> ModelConfig:
    """The same decoder layout (blocks, slots, upsampling) with 16 channels: the wiring, cheaply."""
    return dataclasses.replace(
        cfg, strtfm_hidden=(8, 16), backbone=dataclasses.replace(cfg.backbone, channels=16, groups=4)
    )


def _randomise_strtfm_outputs(model):
    with torch.no_grad():
        for layer in model.decoder.strtfms:
            torch.nn.init.normal_(layer.mlp[-1].weight, std=0.1)


def _gradient_per_variable(model, cut: int) -> list[float]:
    """|d output / d chunk| per variable after making Str-Tfm ``cut`` ignore its input."""
    with torch.no_grad():
        model.decoder.strtfms[cut].mlp[-1].weight.zero_()
    cfg = model.cfg
    z = torch.randn(2, cfg.latent_dim, requires_grad=True)
    model.decode(z).sum().backward()
    return [z.grad[:, sl].abs().sum().item() for sl in variable_slices(cfg.latent_dim, cfg.num_variables)]


def test_sae_variable_i_reaches_the_output_only_through_strtfm_i():
    torch.manual_seed(0)
    model = build_model(get_config("sae12-tiny").model)
    _randomise_strtfm_outputs(model)
    grads = _gradient_per_variable(model, cut=5)
    assert grads[5] == 0.0
    assert all(g > 0 for i, g in enumerate(grads) if i != 5)


@pytest.mark.parametrize("name", SAE_CONFIGS)
def test_sae_k_variable_i_reaches_the_output_only_through_strtfm_i(name):
    cfg = _narrow(get_config(name).model)
    k = cfg.num_variables
    for cut in sorted({0, k // 2, k - 1}):
        torch.manual_seed(cut)
        model = build_model(cfg)
        _randomise_strtfm_outputs(model)
        grads = _gradient_per_variable(model, cut=cut)
        assert grads[cut] == 0.0, (cut, grads)
        assert all(g > 0 for i, g in enumerate(grads) if i != cut), (cut, grads)


def test_adaae_every_variable_reaches_the_output_through_every_layer():
    torch.manual_seed(0)
    cfg = get_config("sae12-tiny").model
    model = build_model(ModelConfig("adaae", 12, 12, cfg.strtfm_hidden, cfg.backbone))
    _randomise_strtfm_outputs(model)
    assert all(g > 0 for g in _gradient_per_variable(model, cut=5))


def test_adaae16_every_variable_reaches_the_output_through_every_layer():
    torch.manual_seed(0)
    model = build_model(_narrow(get_config("adaae16-celeba").model))
    _randomise_strtfm_outputs(model)
    grads = _gradient_per_variable(model, cut=7)
    assert len(grads) == 16 and all(g > 0 for g in grads)


@pytest.mark.parametrize(
    "bad,match",
    [
        (ModelConfig("sae", 12, 5), "divisible"),
        (ModelConfig("vqvae", 12, 12), "unknown model kind"),
        (ModelConfig(backbone=BackboneConfig(channels=60)), "GroupNorm"),
        (ModelConfig("sae", 26, 13), "num_variables=13 exceeds"),
    ],
)
def test_bad_model_configs_say_what_to_change(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model(bad)


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="sae12-tiny"):
        get_config("sae13")
