"""Loss terms (training/losses.py) against values worked out by hand or in closed form on small tensors."""

import math

import pytest
import torch
from torch import nn

from sae.training.losses import (
    FactorDiscriminator,
    bce_with_logits_loss,
    beta_tcvae_loss,
    beta_tcvae_terms,
    factorvae_discriminator_loss,
    factorvae_tc_estimate,
    gaussian_kl,
    imq_kernel,
    log_density_gaussian,
    mmd_imq,
    mss_log_importance_weights,
    permute_dims,
    reparameterize,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


# ---------------------------------------------------------------- reconstruction
def test_bce_hand_computed_2x1x2x2():
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    logits = torch.tensor([[[[0.0, LN3], [-LN3, 0.0]]], [[[LN3, LN3], [-LN3, -LN3]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.5]]], [[[0.0, 1.0], [1.0, 0.0]]]])
    # sample 1: ln2 + ln(4/3) + ln(4/3) + ln2 ; sample 2: ln4 + ln(4/3) + ln4 + ln(4/3)
    s1 = 2 * LN2 + 2 * math.log(4 / 3)
    s2 = 2 * math.log(4) + 2 * math.log(4 / 3)
    got = bce_with_logits_loss(logits, target)
    assert got.shape == ()
    assert got.item() == pytest.approx((s1 + s2) / 2, abs=1e-6)
    # Summed over pixels, not averaged: 8x the per-pixel mean.
    assert got.item() == pytest.approx(
        4 * nn.functional.binary_cross_entropy_with_logits(logits, target).item(), abs=1e-6
    )


def test_bce_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"logits \(2, 3\) and target \(2, 4\) differ in shape"):
        bce_with_logits_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- VAE
def test_gaussian_kl_closed_form():
    mu = torch.tensor([[1.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # 0.5 * [(1 + 1 - 1 - 0) + (4 + 4 - 1 - ln 4)] = 4 - ln 2
    assert gaussian_kl(mu, logvar).item() == pytest.approx(4.0 - LN2, abs=1e-6)
    # averaged over the batch: add a sample at the prior (KL 0)
    mu2 = torch.cat([mu, torch.zeros(1, 2)])
    logvar2 = torch.cat([logvar, torch.zeros(1, 2)])
    assert gaussian_kl(mu2, logvar2).item() == pytest.approx((4.0 - LN2) / 2, abs=1e-6)


def test_gaussian_kl_zero_at_prior_and_positive_elsewhere():
    assert gaussian_kl(torch.zeros(5, 12), torch.zeros(5, 12)).item() == 0.0
    assert gaussian_kl(torch.zeros(1, 3), torch.full((1, 3), -1.0)).item() > 0.0


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(ref.item(), rel=1e-5)


def test_reparameterize_statistics_and_generator():
    mu = torch.full((20000, 2), 3.0)
    logvar = torch.full((20000, 2), math.log(0.25))  # std 0.5
    z1 = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    z2 = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(z1, z2)
    assert z1.mean().item() == pytest.approx(3.0, abs=0.02)
    assert z1.std().item() == pytest.approx(0.5, abs=0.02)
    # gradients reach mu and logvar
    m = torch.zeros(3, 2, requires_grad=True)
    lv = torch.zeros(3, 2, requires_grad=True)
    reparameterize(m, lv).sum().backward()
    assert m.grad is not None and lv.grad is not None


def test_log_density_gaussian():
    x = torch.tensor([0.0, 1.0, -2.0])
    mu = torch.tensor([0.0, 0.0, 1.0])
    logvar = torch.tensor([0.0, 0.0, math.log(4.0)])
    want = torch.tensor(
        [
            -0.5 * math.log(2 * math.pi),
            -0.5 * math.log(2 * math.pi) - 0.5,
            -0.5 * (math.log(2 * math.pi) + math.log(4) + 9 / 4),
        ]
    )
    torch.testing.assert_close(log_density_gaussian(x, mu, logvar), want)


# ---------------------------------------------------------------- WAE
def test_imq_kernel_by_hand():
    x = torch.tensor([[0.0, 0.0]])
    y = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    k = imq_kernel(x, y, scale=2.0)
    assert k.shape == (1, 2)
    torch.testing.assert_close(k, torch.tensor([[2.0 / 7.0, 1.0]]))  # ||x - y||^2 = 5 ; self -> 1


def test_mmd_two_point_identical_sets_closed_form():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # d^2 = 2, C = latent dim = 2 -> k_off = 1/2
    # within terms: 1/2 each; cross: (1 + 1 + 1/2 + 1/2) / 4 = 3/4  ->  1/2 + 1/2 - 3/2 = -1/2
    assert mmd_imq(z, z.clone()).item() == pytest.approx(-0.5, abs=1e-6)


def test_mmd_two_point_different_sets_by_hand():
    z = torch.tensor([[0.0], [1.0]])
    p = torch.tensor([[0.0], [3.0]])  # C = 1
    # k_zz off 1/2, k_pp off 1/10, cross (1 + 1/10 + 1/2 + 1/5) / 4 = 0.45
    assert mmd_imq(z, p).item() == pytest.approx(0.5 + 0.1 - 0.9, abs=1e-6)
    # explicit scale overrides the default
    assert mmd_imq(z, p, scale=2.0).item() == pytest.approx(
        2 / 3 + 2 / 11 - 2 * (1 + 2 / 11 + 2 / 3 + 2 / 6) / 4, abs=1e-6
    )


def test_mmd_identical_sets_near_zero_closed_form():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 8, generator=g)
    # MMD(Z, Z) = -2 (1 - mean off-diagonal kernel) / n  (exactly, for the unbiased estimate)
    k = imq_kernel(z, z, 8.0)
    kbar = (k.sum() - k.diagonal().sum()) / (400 * 399)
    got = mmd_imq(z, z.clone())
    assert got.item() == pytest.approx((-2 * (1 - kbar) / 400).item(), abs=1e-6)
    assert -0.005 < got.item() <= 0.0


def test_mmd_grows_with_shift():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(256, 4, generator=g)
    prior = torch.randn(256, 4, generator=g)
    same = mmd_imq(z, prior).item()
    values = [mmd_imq(z + s, prior).item() for s in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.01
    assert same < values[0] < values[1] < values[2]
    assert values[2] > 0.1


# ---------------------------------------------------------------- β-TCVAE
def test_mss_weights_by_hand():
    w = mss_log_importance_weights(3, 10).exp()  # N = 10, M = 2: own 1/10, stratum 8/20, rest 1/2
    want = torch.tensor([[0.1, 0.4, 0.5], [0.5, 0.1, 0.4], [0.4, 0.5, 0.1]])
    torch.testing.assert_close(w, want)
    w_big = mss_log_importance_weights(128, 480000, dtype=torch.float64).exp()
    torch.testing.assert_close(w_big.sum(1), torch.ones(128, dtype=torch.float64))
    with pytest.raises(ValueError, match="minibatch-stratified sampling needs a batch of at least 2"):
        mss_log_importance_weights(1, 10)


def _prior_matched_posteriors(batch, dims, s, seed, duplicate=False):
    """Posteriors N(mu, s^2) with mu ~ N(0, 1 - s^2): the aggregate posterior is exactly N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, dims, generator=g) * math.sqrt(1 - s * s)
    logvar = torch.full((batch, dims), math.log(s * s))
    z = reparameterize(mu, logvar, g)
    if duplicate:
        mu[:, 1] = mu[:, 0]
        z[:, 1] = z[:, 0]
    return z, mu, logvar


@pytest.mark.parametrize("mss", [True, False])
def test_beta_tcvae_terms_sum_to_monte_carlo_kl(mss):
    z, mu, logvar = _prior_matched_posteriors(64, 5, 0.6, seed=3)
    t = beta_tcvae_terms(z, mu, logvar, dataset_size=1000, minibatch_stratified=mss)
    assert set(t) == {"mutual_info", "total_correlation", "dimwise_kl"}
    mc_kl = (log_density_gaussian(z, mu, logvar).sum(1) - log_density_gaussian(z, 0 * z, 0 * z).sum(1)).mean()
    assert sum(t.values()).item() == pytest.approx(mc_kl.item(), abs=1e-4)


def test_beta_tcvae_tc_duplicate_dims_much_larger_than_independent():
    z, mu, logvar = _prior_matched_posteriors(512, 2, 0.5, seed=4)
    zd, mud, lvd = _prior_matched_posteriors(512, 2, 0.5, seed=4, duplicate=True)
    tc_ind = beta_tcvae_terms(z, mu, logvar, dataset_size=100000)["total_correlation"].item()
    tc_dup = beta_tcvae_terms(zd, mud, lvd, dataset_size=100000)["total_correlation"].item()
    # measured: tc_ind ~ 0.00, tc_dup ~ 0.84
    assert tc_dup > 0.5
    assert tc_dup > tc_ind + 0.5


def test_beta_tcvae_tc_near_zero_for_independent_prior_samples():
    # measured over seeds 0-4 with B = 2048: |TC| <= 0.0025 (N = B or N = 1e5)
    for n in (2048, 100000):
        z, mu, logvar = _prior_matched_posteriors(2048, 2, 0.5, seed=0)
        t = beta_tcvae_terms(z, mu, logvar, dataset_size=n)
        assert abs(t["total_correlation"].item()) < 0.02
        assert abs(t["dimwise_kl"].item()) < 0.02  # marginals are N(0, 1) = prior


def test_beta_tcvae_loss_weights_terms():
    z, mu, logvar = _prior_matched_posteriors(32, 3, 0.5, seed=5, duplicate=True)
    t = beta_tcvae_terms(z, mu, logvar, 5000)
    got = beta_tcvae_loss(z, mu, logvar, 5000, alpha=0.5, beta=3.0, gamma=2.0)
    want = 0.5 * t["mutual_info"] + 3.0 * t["total_correlation"] + 2.0 * t["dimwise_kl"]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    default = beta_tcvae_loss(z, mu, logvar, 5000)  # notes: alpha 1, beta 6, gamma 1
    assert default.item() == pytest.approx(
        (t["mutual_info"] + 6 * t["total_correlation"] + t["dimwise_kl"]).item(), rel=1e-6
    )


# ---------------------------------------------------------------- FactorVAE
def test_permute_dims_keeps_columns_and_breaks_joint():
    b, d = 64, 3
    z = torch.arange(b * d, dtype=torch.float32).reshape(b, d)
    zp = permute_dims(z, torch.Generator().manual_seed(0))
    assert zp.shape == z.shape
    for j in range(d):  # each column keeps its multiset of values
        assert torch.equal(zp[:, j].sort().values, z[:, j])
    # not a joint row permutation: rows of zp are (mostly) not rows of z
    rows = {tuple(r) for r in z.tolist()}
    assert sum(tuple(r) in rows for r in zp.tolist()) < b // 2
    # the permutations of the columns differ
    idx = (zp - torch.arange(d)) / d
    assert not torch.equal(idx[:, 0], idx[:, 1]) and not torch.equal(idx[:, 1], idx[:, 2])


def test_permute_dims_decorrelates_duplicate_columns():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 1, generator=g)
    z = torch.cat([x, x], dim=1)
    zp = permute_dims(z, g)
    corr = torch.corrcoef(zp.T)[0, 1].item()
    assert abs(corr) < 0.1  # 1.0 before; std of the sample correlation ~ 0.022


def test_factor_discriminator_shape_and_structure():
    disc = FactorDiscriminator(12)
    assert disc(torch.randn(7, 12)).shape == (7, 2)
    linears = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 1000), (1000, 1000), (1000, 1000), (1000, 2)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in disc.modules()) == 3
    assert all(m.negative_slope == 0.2 for m in disc.modules() if isinstance(m, nn.LeakyReLU))
    # 12*1000+1000 + 2*(1000*1000+1000) + 1000*2+2 + 3*2*1000
    assert sum(p.numel() for p in disc.parameters()) == 2_023_002


def _equal_logit_discriminator(latent_dim=4):
    disc = FactorDiscriminator(latent_dim)
    with torch.no_grad():
        disc.net[-1].weight.zero_()
        disc.net[-1].bias.fill_(0.3)
    return disc


def test_discriminator_loss_ln2_for_equal_logits_and_tc_zero():
    disc = _equal_logit_discriminator()
    g = torch.Generator().manual_seed(0)
    z, z_other = torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g)
    assert factorvae_discriminator_loss(disc, z, z_other, generator=g).item() == pytest.approx(LN2, abs=1e-6)
    assert factorvae_tc_estimate(disc, z).item() == pytest.approx(0.0, abs=1e-6)


class _ConstantLogits(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, z):
        return torch.stack([torch.full_like(z[:, 0], self.a), torch.zeros_like(z[:, 0])], dim=1) + 0 * z.sum(
            1, keepdim=True
        )


def test_discriminator_loss_and_tc_with_constant_logits_by_hand():
    a = 1.5
    disc = _ConstantLogits(a)
    z = torch.randn(8, 3)
    # real -> class 0: -log softmax_0 = log(1 + e^-a); permuted -> class 1: log(1 + e^a)
    want = 0.5 * (math.log1p(math.exp(-a)) + math.log1p(math.exp(a)))
    assert factorvae_discriminator_loss(disc, z, z).item() == pytest.approx(want, abs=1e-6)
    assert factorvae_tc_estimate(disc, z).item() == pytest.approx(a, abs=1e-6)


def test_discriminator_loss_trains_only_the_discriminator():
    disc = FactorDiscriminator(4)
    z = torch.randn(16, 4, requires_grad=True)
    loss = factorvae_discriminator_loss(disc, z, z)
    loss.backward()
    assert z.grad is None
    assert disc.net[0].weight.grad is not None
    # the TC estimate, in contrast, reaches the encoder's z
    disc.zero_grad()
    factorvae_tc_estimate(disc, z).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
