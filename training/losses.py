"""Loss terms of every model (AE/SAE, VAE/β-VAE, WAE, β-TCVAE, FactorVAE), as pure torch functions.

Conventions (see ``/work/shared/notes/paper-architecture.md``, "Backbone" and "Baseline regularisers as trained"):

* Latents are ``[B, D]`` tensors. Per-sample quantities are **summed over all non-batch dimensions** and
  **averaged over the batch**, for the reconstruction loss and for every regulariser alike.
* Gaussian posteriors are parameterised by ``mu`` and ``logvar`` (the log *variance*). An encoder that outputs a
  log-scale ``log σ`` passes ``logvar = 2 * log σ``.
* The functions return only the named term; the caller combines them with the weights of the notes
  (β-VAE β, WAE weight 10, β-TCVAE α=1/β=6/γ=1, FactorVAE γ=40).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "bce_with_logits_loss",
    "gaussian_kl",
    "reparameterize",
    "log_density_gaussian",
    "imq_kernel",
    "mmd_imq",
    "mss_log_importance_weights",
    "beta_tcvae_terms",
    "beta_tcvae_loss",
    "permute_dims",
    "FactorDiscriminator",
    "factorvae_tc_estimate",
    "factorvae_discriminator_loss",
]

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------------------------------
def bce_with_logits_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Pixel binary cross-entropy of ``sigmoid(logits)`` against ``target`` in [0, 1].

    ``-Σ_pixels [t log σ(l) + (1 - t) log(1 - σ(l))]`` summed over every non-batch dimension, averaged over the
    batch (notes, "Backbone": "binary cross-entropy ... summed over pixels and averaged over the batch"). Taking
    logits (the decoder output before its final sigmoid) is the numerically stable form.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    per_pixel = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return per_pixel.reshape(per_pixel.shape[0], -1).sum(dim=1).mean()


# --------------------------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------------------------
def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` summed over latent dims, averaged over the batch.

    Closed form (Kingma & Welling 2014, App. B): ``0.5 * Σ_j (σ_j² + μ_j² − 1 − log σ_j²)``. The VAE / β-VAE
    regulariser of the notes, to be multiplied by β by the caller.
    """
    kl = 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar)
    return kl.reshape(kl.shape[0], -1).sum(dim=1).mean()


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised sample ``z = mu + exp(0.5 * logvar) * eps``, ``eps ~ N(0, I)`` (Kingma & Welling 2014).

    ``generator`` (on ``mu``'s device) makes the noise reproducible.
    """
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def log_density_gaussian(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise ``log N(x; mu, exp(logvar)) = -0.5 * (log 2π + logvar + (x - mu)² / exp(logvar))``.

    Broadcasts, so ``x[:, None]`` against ``mu[None]`` gives the pairwise ``[B, B, D]`` matrix that β-TCVAE needs.
    """
    return -0.5 * (_LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar))


# --------------------------------------------------------------------------------------------------------------
# WAE (MMD)
# --------------------------------------------------------------------------------------------------------------
def imq_kernel(x: Tensor, y: Tensor, scale: float) -> Tensor:
    """Inverse multiquadratic kernel matrix ``k(x_i, y_j) = C / (C + ||x_i − y_j||²)`` with ``C = scale``.

    ``x``: ``[n, d]``, ``y``: ``[m, d]`` → ``[n, m]`` (Tolstikhin et al. 2018, WAE, §4). Squared distances are taken
    from explicit differences, so that a point's distance to itself is exactly 0.
    """
    if scale <= 0:
        raise ValueError(f"IMQ scale must be positive, got {scale}")
    sq_dist = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(dim=-1)
    return scale / (scale + sq_dist)


def mmd_imq(z: Tensor, z_prior: Tensor, scale: float | None = None) -> Tensor:
    """Unbiased estimate of ``MMD²(q, p)`` with the IMQ kernel (Gretton et al. 2012, eq. 3; WAE-MMD).

    ``1/(n(n-1)) Σ_{i≠j} k(z_i, z_j) + 1/(m(m-1)) Σ_{i≠j} k(p_i, p_j) − 2/(nm) Σ_{i,j} k(z_i, p_j)``.

    ``scale`` is the kernel constant C. Default: the latent dimension (as the authors trained it, notes "Baseline
    regularisers"); the WAE paper uses ``C = 2 · d · σ²_prior`` (= 2d for a unit Gaussian prior), summed over several
    multiples of C, which this function does not do. Being unbiased, the estimate can be slightly negative.
    The notes' WAE weight (10) is applied by the caller.
    """
    if z.dim() != 2 or z_prior.dim() != 2 or z.shape[1] != z_prior.shape[1]:
        raise ValueError(f"expected [n, d] and [m, d] latents, got {tuple(z.shape)} and {tuple(z_prior.shape)}")
    n, m = z.shape[0], z_prior.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD estimate needs at least 2 samples on each side")
    c = float(z.shape[1]) if scale is None else float(scale)
    k_zz = imq_kernel(z, z, c)
    k_pp = imq_kernel(z_prior, z_prior, c)
    k_zp = imq_kernel(z, z_prior, c)
    # The diagonals are exactly 1 (k(x, x) = C / C); remove them for the unbiased within-set terms.
    term_zz = (k_zz.sum() - k_zz.diagonal().sum()) / (n * (n - 1))
    term_pp = (k_pp.sum() - k_pp.diagonal().sum()) / (m * (m - 1))
    term_zp = k_zp.sum() / (n * m)
    return term_zz + term_pp - 2.0 * term_zp


# --------------------------------------------------------------------------------------------------------------
# β-TCVAE
# --------------------------------------------------------------------------------------------------------------
def mss_log_importance_weights(batch_size: int, dataset_size: int, device=None, dtype=None) -> Tensor:
    """Log weights ``log w[i, j]`` of minibatch-stratified sampling (Chen et al. 2018, App. C.2).

    Estimates ``q(z_i) = (1/N) Σ_n q(z_i | n)`` from a batch of ``B = M + 1`` posteriors: the own posterior
    (``j = i``) gets ``1/N``, one other batch member gets the stratum weight ``(N − M) / (N M)``, the remaining
    ``M − 1`` get ``1/M``; each row sums to 1.

    Difference from the reference implementation (``rtqichen/beta-tcvae``, copied into most libraries): there the
    stratum weight of the last row is written to ``W[M − 1, 0]`` instead of ``W[M, 0]``, so two rows do not sum to 1.
    Here the stratum member of row ``i`` is ``(i + 1) mod B`` for every row.
    """
    if batch_size < 2:
        raise ValueError("minibatch-stratified sampling needs a batch of at least 2")
    n, m = dataset_size, batch_size - 1
    if n <= m:
        raise ValueError(f"dataset_size ({n}) must exceed batch_size - 1 ({m})")
    strat_weight = (n - m) / (n * m)
    w = torch.full((batch_size, batch_size), 1.0 / m, device=device, dtype=dtype or torch.get_default_dtype())
    idx = torch.arange(batch_size, device=device)
    w[idx, idx] = 1.0 / n
    w[idx, (idx + 1) % batch_size] = strat_weight
    return w.log()


def beta_tcvae_terms(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int, minibatch_stratified: bool = True
) -> dict[str, Tensor]:
    """Decomposed KL of β-TCVAE (Chen et al. 2018, eq. 2), each averaged over the batch.

    With ``z_i ~ q(z | x_i)`` (``[B, D]``) and the posteriors ``(mu, logvar)`` of the same batch:

    * ``mutual_info``       = mean_i ``[log q(z_i | x_i) − log q(z_i)]``
    * ``total_correlation`` = mean_i ``[log q(z_i) − Σ_j log q(z_ij)]``
    * ``dimwise_kl``        = mean_i ``[Σ_j log q(z_ij) − log p(z_i)]``, ``p = N(0, I)``

    ``log q(z_i)`` and ``log q(z_ij)`` are estimated over the batch with minibatch-stratified sampling weights
    (:func:`mss_log_importance_weights`, the notes' setting) or, with ``minibatch_stratified=False``, minibatch-weighted
    sampling with the reference code's weight ``1/(N B)`` for every pair. ``dataset_size`` is N, the size of the
    training set. The MWS form is kept as Chen et al. wrote it: its weights do not sum to 1, which offsets the terms by
    constants (TC by ``(D − 1) log N``, e.g. +11.5 nats for D = 2, N = 10⁵) without changing their gradients; MSS has
    no such offset (TC ≈ 0 for independent codes). Whatever the estimator, the three terms sum to the Monte-Carlo KL
    ``mean_i [log q(z_i | x_i) − log p(z_i)]``.
    """
    if z.dim() != 2 or z.shape != mu.shape or z.shape != logvar.shape:
        raise ValueError(f"expected matching [B, D] z, mu, logvar, got {z.shape}, {mu.shape}, {logvar.shape}")
    batch_size = z.shape[0]
    log_qz_cond_x = log_density_gaussian(z, mu, logvar).sum(dim=1)
    log_pz = log_density_gaussian(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
    # mat[i, j, d] = log q(z_i,d | x_j)
    mat = log_density_gaussian(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    if minibatch_stratified:
        log_w = mss_log_importance_weights(batch_size, dataset_size, device=z.device, dtype=z.dtype)
        log_qz = torch.logsumexp(log_w + mat.sum(dim=2), dim=1)
        log_qz_prod_marginals = torch.logsumexp(log_w.unsqueeze(2) + mat, dim=1).sum(dim=1)
    else:
        log_norm = math.log(batch_size * dataset_size)
        log_qz = torch.logsumexp(mat.sum(dim=2), dim=1) - log_norm
        log_qz_prod_marginals = (torch.logsumexp(mat, dim=1) - log_norm).sum(dim=1)
    return {
        "mutual_info": (log_qz_cond_x - log_qz).mean(),
        "total_correlation": (log_qz - log_qz_prod_marginals).mean(),
        "dimwise_kl": (log_qz_prod_marginals - log_pz).mean(),
    }


def beta_tcvae_loss(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    dataset_size: int,
    alpha: float = 1.0,
    beta: float = 6.0,
    gamma: float = 1.0,
    minibatch_stratified: bool = True,
) -> Tensor:
    """β-TCVAE regulariser ``α · MI + β · TC + γ · dimension-wise KL`` (Chen et al. 2018, eq. 4).

    Defaults are the notes' trained values (α = 1, β = 6, γ = 1, minibatch-stratified sampling). The reconstruction
    term is added by the caller.
    """
    t = beta_tcvae_terms(z, mu, logvar, dataset_size, minibatch_stratified=minibatch_stratified)
    return alpha * t["mutual_info"] + beta * t["total_correlation"] + gamma * t["dimwise_kl"]


# --------------------------------------------------------------------------------------------------------------
# FactorVAE
# --------------------------------------------------------------------------------------------------------------
def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Sample from the product of marginals: permute each latent dimension independently **across the batch**.

    ``out[i, j] = z[π_j(i), j]`` with an independent random permutation ``π_j`` of the batch per column
    (Kim & Mnih 2018, Alg. 1). Each column keeps its multiset of values; the joint is broken. (Shuffling the
    dimensions *within* a sample, a known bug elsewhere, is not this.) Differentiable w.r.t. ``z``; the caller
    detaches when training only the discriminator.
    """
    if z.dim() != 2:
        raise ValueError(f"expected [B, D] latents, got {tuple(z.shape)}")
    noise = torch.rand(z.shape, generator=generator, device=z.device)
    perm = noise.argsort(dim=0)  # an independent uniform permutation of 0..B-1 in each column
    return z.gather(0, perm)


class FactorDiscriminator(nn.Module):
    """FactorVAE discriminator: MLP ``latent_dim → 1000 → 1000 → 1000 → 2`` (notes, "Baseline regularisers").

    Each hidden layer is Linear → BatchNorm1d → LeakyReLU(0.2). Output logits ``[B, 2]``: class 0 = a sample of the
    joint ``q(z)``, class 1 = a sample of the product of marginals (:func:`permute_dims`).
    """

    def __init__(
        self, latent_dim: int = 12, hidden_dim: int = 1000, num_hidden_layers: int = 3, negative_slope: float = 0.2
    ):
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.LeakyReLU(negative_slope)]
            width = hidden_dim
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def factorvae_tc_estimate(discriminator: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """Density-ratio estimate of the total correlation (Kim & Mnih 2018, eq. 3).

    ``TC(z) ≈ mean_i [logit_0(z_i) − logit_1(z_i)] = mean_i log(D(z_i) / (1 − D(z_i)))``, with ``D`` the softmax
    probability of class 0 ("joint"). Gradients flow into ``z`` (the VAE term, weighted by γ = 40 by the caller).
    """
    logits = discriminator(z)
    return (logits[:, 0] - logits[:, 1]).mean()


def factorvae_discriminator_loss(
    discriminator: nn.Module,
    z: Tensor,
    z_other: Tensor,
    permute: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Discriminator cross-entropy (Kim & Mnih 2018, Alg. 1): ``0.5 · [CE(D(z), 0) + CE(D(z̃), 1)]``.

    ``z`` (class 0) is a batch from the joint; ``z̃ = permute_dims(z_other)`` (class 1), ``z_other`` being the
    latents of a second, independent batch (pass ``permute=False`` if ``z_other`` is already permuted). Both inputs
    are detached, so this loss trains only the discriminator. Equals ``ln 2`` for a discriminator whose two logits
    are equal.
    """
    z_real = z.detach()
    z_perm = permute_dims(z_other.detach(), generator=generator) if permute else z_other.detach()
    logits_real = discriminator(z_real)
    logits_perm = discriminator(z_perm)
    zeros = torch.zeros(logits_real.shape[0], dtype=torch.long, device=logits_real.device)
    ones = torch.ones(logits_perm.shape[0], dtype=torch.long, device=logits_perm.device)
    return 0.5 * (F.cross_entropy(logits_real, zeros) + F.cross_entropy(logits_perm, ones))
