"""The kind registry refuses kinds it could not serve correctly, and names what to fix."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sae.training.models.autoencoder import Autoencoder
from sae.training.models.registry import RegulariserConfig, model_kind, register_model, unregister_model
from sae.training.models.zoo.sae import StructuralAutoencoder


class _PriorWithoutSampler(Autoencoder):
    has_prior = True


def test_a_prior_needs_a_prior_sampler():
    with pytest.raises(TypeError, match="has_prior is True but it lacks prior_sample"):
        register_model("needsprior")(_PriorWithoutSampler)


def test_a_class_without_the_capabilities_is_refused():
    with pytest.raises(TypeError, match="lacks the capability attributes .*derive it from"):
        register_model("plain")(object)


def test_regulariser_defaults_must_be_regulariser_configs():
    @dataclass(frozen=True)
    class NotARegulariser:
        weight: float = 1.0

    with pytest.raises(TypeError, match="regulariser must be a RegulariserConfig"):
        register_model("badreg", regulariser=NotARegulariser())(Autoencoder)


def test_kind_names_are_lower_case_identifiers():
    with pytest.raises(ValueError, match="'Bad-Name' must be a lower-case identifier"):
        register_model("Bad-Name")(Autoencoder)


def test_regulariser_weights_must_not_be_negative():
    @dataclass(frozen=True)
    class Weighted(RegulariserConfig):
        weight: float = 1.0

    with pytest.raises(ValueError, match=r"ModelConfig\.regulariser\.weight=-2\.0 must not be negative"):
        Weighted(weight=-2.0).validate()


def test_a_kind_registered_and_removed_leaves_no_trace():
    register_model("scratchsae")(StructuralAutoencoder)
    assert model_kind("scratchsae").model_class is StructuralAutoencoder and model_kind("scratchsae").chunked_latent
    unregister_model("scratchsae")
    with pytest.raises(ValueError, match="unknown model kind 'scratchsae'; choose one of sae, adaae"):
        model_kind("scratchsae")
    with pytest.raises(ValueError, match="unknown model kind 'scratchsae'"):
        unregister_model("scratchsae")
