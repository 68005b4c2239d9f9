"""Non-identical diffusion as the posterior sampler of an SRS history (jaxchan.srs_prior): the reliability map is
exact where its model holds, and exact non-identical posterior samples give the exact Gaussian Bayesian precoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs
from jaxchan import data, denoiser, gaussian_prior, oracle, precoding, schedules, srs, srs_prior
from jaxchan.experiments import noniden_srs, noniden_srs_eval

U, N, F, OCC, HOPS = 2, 2, 4, 2, 2
RHO = np.array([0.55 + 0.3j, 0.8 - 0.35j], np.complex64)      # |rho| 0.63 and 0.87


def _factor(rng, n, decay):
  q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
  vals = np.exp(-decay * np.arange(n))
  return (q * (vals * n / vals.sum())) @ q.conj().T


def _setup(seed, B, kappa=1.0):
  """A Kronecker prior, targets drawn from it and Gauss-Markov histories with a white innovation of power
  ``kappa (1 - |rho|^2)`` (the model under which the reliability map is exact), observed by ``srs.observe``."""
  rng = np.random.default_rng(seed)
  Ca, Cs = _factor(rng, N, 0.7), _factor(rng, F, 0.5)
  C = np.kron(Ca, Cs)
  L = np.linalg.cholesky(C)
  z = lambda *s: (rng.normal(size=s) + 1j * rng.normal(size=s)) / np.sqrt(2)  # noqa: E731
  h = (z(B, U, N * F) @ L.T).reshape(B, U, N, F)
  hist = np.stack([np.conj(r) * h + np.sqrt(kappa * (1 - abs(r) ** 2)) * z(B, U, N, F) for r in RHO], 1)
  obs = srs.observe(jnp.asarray(hist, jnp.complex64), jax.random.PRNGKey(seed), num_hops=HOPS,
                    snr_db_range=(-5.0, 15.0))
  prior = gaussian_prior.from_factors(np.zeros((N, F)), Ca, Cs)
  return C, h.astype(np.complex64), obs, prior


_posterior = jax.jit(oracle.posterior)   # one program for every (sample, user) below, not one per op


def _exact_posterior(C, obs, kappa=1.0):
  """``E[h | latest soundings]`` and ``Cov`` per row from the history model itself (dense Gaussian conditioning by
  :mod:`jaxchan.oracle`): ``y = conj(rho_o) h + e``, ``e`` white of variance ``kappa (1 - |rho_o|^2) + nv``."""
  latest, occ, seen = srs.latest_observation(obs.obs, obs.mask)
  assert bool(jnp.all(seen))
  gmm = oracle.GaussianMixture(jnp.ones(1), jnp.zeros((1, N * F), jnp.complex64), jnp.asarray(C[None], jnp.complex64))
  means, covs = [], []
  for b in range(latest.shape[0]):
    r = jnp.broadcast_to(jnp.asarray(RHO)[occ[b]], (N, F)).reshape(-1)
    var = kappa * (1 - jnp.abs(r) ** 2) + obs.noise_var[b]
    post = [_posterior(gmm, latest[b, u].reshape(-1), jnp.diag(jnp.conj(r)), jnp.diag(var).astype(jnp.complex64))
            for u in range(U)]
    means.append(jnp.stack([p.means[0] for p in post]).reshape(U, N, F))
    covs.append(jnp.stack([p.covs[0] for p in post]))
  return jnp.stack(means), jnp.stack(covs)                                            # [B, U, N, F], [B, U, d, d]


@pytest.mark.parametrize("kappa", [1.0, pytest.param(3.0, marks=pytest.mark.slow)])
def test_reliability_map_reproduces_the_exact_posterior_mean(kappa):
  C, _, obs, _ = _setup(0, 4, kappa)
  exact, _ = _exact_posterior(C, obs, kappa)
  h_bar, m = srs.elementwise_observation(obs, RHO, jax.random.PRNGKey(1), innovation=kappa)
  gmm = oracle.GaussianMixture(jnp.ones(1), jnp.zeros((1, N * F), jnp.complex64), jnp.asarray(C[None], jnp.complex64))
  eq14 = jax.vmap(lambda y, mm: oracle.posterior_mean(gmm, y, jnp.diag(mm).astype(jnp.complex64),
                                                      jnp.eye(N * F, dtype=jnp.complex64)))(
      h_bar.reshape(-1, N * F), m.reshape(-1, N * F)).reshape(exact.shape)
  # Both are float32 solves of the same 8 x 8 Gaussian problem: agreement to ~1e-5 of the signal's scale.
  np.testing.assert_allclose(np.asarray(eq14), np.asarray(exact), atol=2e-5 * float(jnp.max(jnp.abs(exact))) + 1e-6)


def _zero_network_denoiser(prior):
  net = denoiser.FunctionNetwork(lambda x, tau: jnp.zeros_like(x))
  return denoiser.make(net, schedules.GammaSchedule(100, 0.2), prior=prior, tol=1e-6, max_iter=200)


@pytest.mark.slow
def test_one_shot_of_the_untrained_prior_is_the_exact_posterior_mean():
  """The whole chain: history -> reliability map -> consistent start -> anchored denoiser with r_theta = 0."""
  C, _, obs, prior = _setup(2, 4)
  exact, _ = _exact_posterior(C, obs)
  cond = srs_prior.condition(_zero_network_denoiser(prior), obs, RHO, jax.random.PRNGKey(3), anchor="train",
                             innovation="white")
  est = srs_prior.from_rows(srs_prior.estimate(cond, None), U)
  # CG to a relative residual of 1e-6 in float32, then D = alpha g - beta v: 1e-4 of the scale covers both.
  np.testing.assert_allclose(np.asarray(est), np.asarray(exact), atol=1e-4 * float(jnp.max(jnp.abs(exact))))


@pytest.mark.slow
def test_exact_posterior_samples_give_the_exact_gaussian_bayesian_precoder():
  C, _, obs, prior = _setup(4, 2)
  mean, cov = _exact_posterior(C, obs)
  S = cov + jnp.einsum("bui,buj->buij", mean.reshape(2, U, -1), jnp.conj(mean.reshape(2, U, -1)))    # E[h h^H]
  G_exact = jnp.einsum("bujfif->bijf", S.reshape(2, U, N, F, N, F))                  # oracle.expected_gramian's
  cond = srs_prior.condition(_zero_network_denoiser(prior), obs, RHO, jax.random.PRNGKey(5), anchor="train",
                             innovation="white")
  K = 4096
  samples = srs_prior.posterior_samples(cond, None, jax.random.PRNGKey(6), K, sampler=oracle_sampler(),
                                        num_steps=50)
  G = precoding.gramian(srs_prior.from_rows(samples, U))
  # 4,096 samples: the Gramian's Monte-Carlo error is ~1/sqrt(4096) = 1.6 % of its scale; 50 DPM-Solver++(2M) steps
  # pass the exact-posterior moment tests (tests/test_sampler_exactness.py). 6 % leaves room for both.
  err = jnp.linalg.norm(G - G_exact, axis=(1, 2)) / jnp.linalg.norm(G_exact, axis=(1, 2))
  assert float(jnp.max(err)) < 0.06, np.asarray(err)
  # The precoders: the sampled one captures (nearly) all of the exact one's expected energy.
  W, W_exact = precoding.precoder_from_gramian(G, 1), precoding.precoder_from_gramian(G_exact, 1)
  energy = lambda w: jnp.real(jnp.einsum("bisf,bijf,bjsf->bf", jnp.conj(w), G_exact, w))  # noqa: E731
  assert float(jnp.min(energy(W) / energy(W_exact))) > 0.99


def oracle_sampler():
  from jaxchan import noniden
  return noniden.Sampler("dpm2m", 1.0)


@pytest.mark.slow
def test_innovation_scale_is_the_largest_eigenvalue_of_the_prior_in_use():
  _, _, obs, prior = _setup(6, 3)
  C = np.asarray(prior.covariance())
  lam_a = np.linalg.eigvalsh(np.asarray(prior.factors()[0]))
  lam_s = np.linalg.eigvalsh(np.asarray(prior.factors()[1]))
  np.testing.assert_allclose(srs_prior.innovation_scale(prior, "joint", 3), max(np.linalg.eigvalsh(C).max(), 1), rtol=1e-5)
  np.testing.assert_allclose(srs_prior.innovation_scale(prior, "spatial", 3), max(lam_a.max() * lam_s.mean(), 1),
                             rtol=1e-5)
  np.testing.assert_array_equal(srs_prior.innovation_scale(prior, "white", 3), 1.0)
  # Per-user priors (one per row, U rows per sample): each sample gets its own user's largest eigenvalue.
  den = _zero_network_denoiser(prior)
  cond = srs_prior.condition(den, obs, RHO, jax.random.PRNGKey(0), anchor="user", innovation="joint")
  assert cond.den.prior.mean.shape == (3 * U, N, F)
  user = cond.den.prior
  ref = [max(np.linalg.eigvalsh(np.asarray(jax.tree.map(lambda a: a[U * b], user).covariance())).max(), 1.0)
         for b in range(3)]
  np.testing.assert_allclose(srs_prior.innovation_scale(user, "joint", 3), ref, rtol=1e-4)


@pytest.mark.parametrize("kappa_kind, confident",
                         [pytest.param("joint", False, marks=pytest.mark.slow), ("white", True)])
def test_bounded_innovation_is_never_more_confident_than_the_colored_truth(kappa_kind, confident):
  """An innovation with the prior's own covariance C (h_o = conj(rho) h + sqrt(1 - |rho|^2) w, w ~ CN(0, C)), one
  occasion sounding every PRB: with kappa = lam_max(C) the element-wise posterior covariance is at least the exact
  one (along every eigenvector of C its SNR is at most the exact SNR); eq. (14)'s white kappa = 1 is over-confident
  along C's strong directions (lam_max > 1 here), which is what the bound removes."""
  C, _, obs, prior = _setup(8, 2)
  one = srs.observe(jnp.zeros((2, 1, U, N, F), jnp.complex64), jax.random.PRNGKey(9), num_hops=1,
                    snr_db_range=(0.0, 10.0))
  rho = RHO[-1:]
  kappa = srs_prior.innovation_scale(prior, kappa_kind, 2)
  assert float(np.linalg.eigvalsh(C).max()) > 1.5
  _, m = srs.elementwise_observation(one, rho, jax.random.PRNGKey(1), innovation=kappa)
  gmm = oracle.GaussianMixture(jnp.ones(1), jnp.zeros((1, N * F), jnp.complex64), jnp.asarray(C[None], jnp.complex64))
  eye = jnp.eye(N * F, dtype=jnp.complex64)
  for b in range(2):
    mm = m[b, 0].reshape(-1)
    P_map = oracle.posterior(gmm, jnp.zeros(N * F, jnp.complex64), jnp.diag(mm).astype(jnp.complex64), eye).covs[0]
    noise = (1 - abs(rho[0]) ** 2) * jnp.asarray(C, jnp.complex64) + one.noise_var[b] * eye
    P_true = oracle.posterior(gmm, jnp.zeros(N * F, jnp.complex64), np.conj(rho[0]) * eye, noise).covs[0]
    low = float(np.linalg.eigvalsh(np.asarray(P_map - P_true)).min())
    # float32 posteriors of a unit-scale 8 x 8 problem: 1e-5 separates rounding from a real deficit.
    assert (low < -1e-3) if confident else (low > -1e-5), low


def test_rows_round_trip():
  x = jnp.arange(2 * U * N * F).reshape(2, U, N, F)
  np.testing.assert_array_equal(srs_prior.from_rows(srs_prior.to_rows(x), U), x)
  with pytest.raises(ValueError, match="whole number"):
    srs_prior.from_rows(jnp.zeros((3, N, F)), 2)


def test_bad_input_is_refused_with_the_field_and_the_fix():
  _, _, obs, prior = _setup(7, 2)
  den = _zero_network_denoiser(prior)
  with pytest.raises(ValueError, match="anchor"):
    srs_prior.condition(den, obs, RHO, jax.random.PRNGKey(0), anchor="paper")
  with pytest.raises(ValueError, match="innovation"):
    srs_prior.condition(den, obs, RHO, jax.random.PRNGKey(0), innovation="colored")
  with pytest.raises(ValueError, match="Kronecker"):
    srs_prior.condition(den.replace(prior=None), obs, RHO, jax.random.PRNGKey(0))
  other = gaussian_prior.from_factors(np.zeros((N, 2 * F)), np.eye(N), np.eye(2 * F))
  with pytest.raises(ValueError, match="n_bs, n_prb"):
    srs_prior.condition(_zero_network_denoiser(other), obs, RHO, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="innovation"):
    srs.elementwise_observation(obs, RHO, jax.random.PRNGKey(0), innovation=0.5)
  with pytest.raises(ValueError, match="num"):
    srs_prior.posterior_samples(srs_prior.condition(den, obs, RHO, jax.random.PRNGKey(0)), None,
                                jax.random.PRNGKey(0), 0)


@pytest.mark.parametrize("field,value,match", [
    ("eval.unseen", ("hops:3",), "hops:N"),
    ("eval.unseen", ("occasions:0",), "occasions"),
    ("eval.unseen", ("snr:nan",), "snr:DB"),
    ("eval.unseen", ("speed:30",), "hops:N"),
    ("eval.num_samples", 0, "num_samples"),
    ("srs_prior.innovation", "colored", "innovation"),
    ("srs_prior.anchors", ("train", "none"), "anchors"),
    ("eval.perception_results", "/no/such/dir", "perception_results"),
    ("model.anchor", "none", "Kronecker"),
    ("eval.sampler", "eta:2", "sampler"),
    ("scenarios", ("urban",), "scenarios"),
    ("eval.speeds", (-3.0,), "speeds"),
    ("srs.num_hops", 5, "num_hops"),
    ("srs.num_hops", 0, "num_hops"),
    ("srs.snr_db_range", (-10.0, float("inf")), "snr_db_range"),
])
def test_config_mistakes_are_refused_before_any_work(field, value, match):
  c = configs.get("noniden_srs:smoke")
  section, _, name = field.rpartition(".")
  (c[section] if section else c)[name] = value
  with pytest.raises(ValueError, match=match):
    noniden_srs.validate(c)


def test_unseen_settings_parse():
  c = configs.get("noniden_srs:quick")
  assert noniden_srs_eval.parse_unseen("hops:2", c).num_hops == 2
  assert noniden_srs_eval.parse_unseen("occasions:1", c).occasions == 1
  assert noniden_srs_eval.parse_unseen("snr:-15", c).snr_db_range == (-15.0, -15.0)
  noniden_srs.validate(c)


def test_array_dataset_batches_every_sample_once_per_epoch_in_a_seeded_order():
  x = np.arange(10)[:, None] * np.ones((1, 3))
  ds = data.ArrayDataset({"train": {"h": x}, "test": {"h": x[:4]}})
  assert ds.size("train") == 10 and ds.shape("h") == (3,)
  seen = np.concatenate([b["h"][:, 0] for b in ds.batches("train", 3, seed=1, epoch=0, drop_remainder=False)])
  assert sorted(seen.tolist()) == list(range(10))
  again = np.concatenate([b["h"][:, 0] for b in ds.batches("train", 3, seed=1, epoch=0, drop_remainder=False)])
  np.testing.assert_array_equal(seen, again)
  assert all(b["h"].shape[0] == 3 for b in ds.batches("train", 3, stop=7))
  with pytest.raises(ValueError, match="splits"):
    data.ArrayDataset({"train": {"h": x}})
