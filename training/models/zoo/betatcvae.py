"""β-TCVAE (Chen et al. 2018): ``BCE + α · MI + β · TC + γ · dimension-wise KL``, minibatch-stratified sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sae.training.config_error import TrainingConfigError
from sae.training.dataset_sizes import SHAPES3D_TRAIN_SIZE
from sae.training.losses import beta_tcvae_terms
from sae.training.models.registry import RegulariserConfig, register_model
from sae.training.models.zoo.vae import VariationalAutoencoder


@dataclass(frozen=True)
class BetaTCVAEConfig(RegulariserConfig):
    """``beta`` defaults to 4, the issue's value (the paper's best); the authors' trained model used 6
    (``betatcvae6-*`` configs). ``dataset_size`` is N of the minibatch-stratified (or -weighted) estimator: the size of
    the training split.
    """

    alpha: float = 1.0
    beta: float = 4.0
    gamma: float = 1.0
    dataset_size: int = SHAPES3D_TRAIN_SIZE
    minibatch_stratified: bool = True

    def validate(self) -> None:
        super().validate()
        if self.dataset_size < 2:
            raise TrainingConfigError(
                f"ModelConfig.regulariser.dataset_size={self.dataset_size}: give the training split's size"
            )

    def validate_batch(self, batch_size: int) -> None:
        if self.dataset_size <= batch_size - 1:
            raise TrainingConfigError(
                f"ModelConfig.regulariser.dataset_size={self.dataset_size} must exceed "
                f"TrainConfig.batch_size - 1 = {batch_size - 1}"
            )


@register_model("betatcvae", regulariser=BetaTCVAEConfig())
class BetaTCVAE(VariationalAutoencoder):
    """α 1, β 4, γ 1 by default; the estimator needs two latents of a batch at least."""

    min_batch_size = 2

    def regulariser_terms(self, z, mu, logvar):
        reg = cast(BetaTCVAEConfig, self.cfg.regulariser)  # cfg.validate() checked it is the kind's class
        t = beta_tcvae_terms(z, mu, logvar, reg.dataset_size, minibatch_stratified=reg.minibatch_stratified)
        weighted = reg.alpha * t["mutual_info"] + reg.beta * t["total_correlation"] + reg.gamma * t["dimwise_kl"]
        return weighted, t
