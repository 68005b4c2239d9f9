import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, precoding

N_UE, N_BS, N_F = 4, 16, 6


def _channels(key, batch=(3,)):
  return conventions.standard_normal(key, batch + (N_UE, N_BS, N_F))


def _projector(W):
  # Column-phase (and in general in-subspace rotation) invariant: W W^H per subcarrier.
  return jnp.einsum("...isf,...jsf->...ijf", W, jnp.conj(W))


@pytest.mark.parametrize("n_s", [1, 2, 4])
def test_bayesian_with_one_sample_is_svd_up_to_phases(n_s):
  H = _channels(jax.random.PRNGKey(0))
  W_svd = precoding.svd_precoder(H, n_s)
  W_bay = precoding.bayesian_precoder(H[None], n_s)
  assert W_svd.shape == W_bay.shape == (3, N_BS, n_s, N_F)
  # Column by column |w_svd^H w_bay| = 1 (distinct singular values of a
  # Gaussian channel, so each eigenvector is unique up to a phase).
  inner = jnp.abs(jnp.einsum("...isf,...isf->...sf", jnp.conj(W_svd), W_bay))
  np.testing.assert_allclose(inner, 1.0, atol=1e-4)
  np.testing.assert_allclose(_projector(W_svd), _projector(W_bay), atol=1e-4)


def test_precoders_are_orthonormal():
  H = _channels(jax.random.PRNGKey(1))
  for W in (precoding.svd_precoder(H, 2), precoding.bayesian_precoder(jnp.stack([H, 2 * H]), 2),
            precoding.random_precoder(jax.random.PRNGKey(2), (3,), N_BS, 2, N_F)):
    gram = jnp.einsum("...isf,...itf->...stf", jnp.conj(W), W)
    np.testing.assert_allclose(gram, np.eye(2)[None, :, :, None] * np.ones((3, 1, 1, N_F)), atol=1e-5)


def test_se_rank_one_closed_form():
  # One UE antenna, one stream, matched precoder w = h^H / ||h||: SE = log2(1 + rho ||h||^2).
  h = conventions.standard_normal(jax.random.PRNGKey(3), (5, 1, N_BS, N_F))
  W = precoding.svd_precoder(h, 1)
  rho = 3.0
  expect = jnp.mean(jnp.log2(1 + rho * jnp.sum(jnp.abs(h[:, 0]) ** 2, axis=1)), axis=-1)
  np.testing.assert_allclose(precoding.spectral_efficiency(h, W, rho), expect, rtol=1e-5)


def test_se_matches_direct_logdet():
  H = _channels(jax.random.PRNGKey(4))
  W = precoding.random_precoder(jax.random.PRNGKey(5), (3,), N_BS, 2, N_F)
  rho = 10.0
  Hn, Wn = np.asarray(H, np.complex128), np.asarray(W, np.complex128)
  se = np.zeros(3)
  for b in range(3):
    for f in range(N_F):
      M = Hn[b, :, :, f] @ Wn[b, :, :, f]
      se[b] += np.log2(np.linalg.det(np.eye(N_UE) + rho / 2 * M @ M.conj().T).real) / N_F
  np.testing.assert_allclose(precoding.spectral_efficiency(H, W, rho), se, rtol=1e-5)


def test_perfect_csi_svd_beats_random_precoders():
  H = _channels(jax.random.PRNGKey(6), batch=(8,))
  for snr in (0.1, 1.0, 100.0):
    se_svd = precoding.spectral_efficiency(H, precoding.svd_precoder(H, 2), snr)
    for k in range(20):
      W = precoding.random_precoder(jax.random.PRNGKey(100 + k), (8,), N_BS, 2, N_F)
      assert np.all(np.asarray(se_svd) >= np.asarray(precoding.spectral_efficiency(H, W, snr)) - 1e-5)


@pytest.mark.slow
def test_bayesian_precoder_maximizes_expected_energy():
  # Eq. (28): no orthonormal W beats the dominant eigenvectors on (1/K) sum ||H_k W||_F^2.
  Hs = _channels(jax.random.PRNGKey(7), batch=(16, 2))
  W = precoding.bayesian_precoder(Hs, 2)
  energy = lambda W: jnp.mean(jnp.sum(jnp.abs(jnp.einsum("k...uif,...isf->k...usf", Hs, W)) ** 2, axis=(-3, -2)), axis=0)  # noqa: E731
  best = energy(W)
  for k in range(20):
    R = precoding.random_precoder(jax.random.PRNGKey(200 + k), (2,), N_BS, 2, N_F)
    assert np.all(np.asarray(best) >= np.asarray(energy(R)) - 1e-4)
  # The optimum equals the sum of the two largest eigenvalues of G.
  G = precoding.gramian(Hs)
  lam = jnp.linalg.eigvalsh(jnp.moveaxis(G, -1, -3))[..., -2:].sum(-1)
  np.testing.assert_allclose(best, lam, rtol=1e-4)


def test_precoding_bad_input():
  H = _channels(jax.random.PRNGKey(8))
  with pytest.raises(ValueError, match=r"n_streams=5 exceeds the channel rank dimension"):
    precoding.svd_precoder(H, 5)
  with pytest.raises(ValueError, match=r"n_streams=5 exceeds"):
    precoding.bayesian_precoder(H[None], 5)
  with pytest.raises(ValueError, match="disagree"):
    precoding.spectral_efficiency(H, precoding.svd_precoder(H, 2)[..., :3], 1.0)
  with pytest.raises(ValueError, match="snr must be a scalar"):
    precoding.spectral_efficiency(H, precoding.svd_precoder(H, 2), jnp.ones(5))


def test_precoding_under_jit_and_vmap():
  H = _channels(jax.random.PRNGKey(9))
  f = jax.jit(lambda h: precoding.spectral_efficiency(h, precoding.svd_precoder(h, 2), 5.0))
  g = jax.vmap(lambda h: precoding.spectral_efficiency(h[None], precoding.svd_precoder(h[None], 2), 5.0)[0])
  np.testing.assert_allclose(f(H), g(H), rtol=1e-5)


@pytest.mark.slow
def test_latent_precoder_derivative_is_exact_with_distinct_eigenvalues_and_finite_at_repeated_ones():
  """The broadened eigenvector derivative (precoding._eigh) equals JAX's own where eigenvalues are distinct, and
  stays finite for a latent with an all-zero row (repeated eigenvalue 0 of Z Z^H)."""
  Z = conventions.standard_normal(jax.random.PRNGKey(3), (2, 4, 6, 3))
  H = conventions.standard_normal(jax.random.PRNGKey(4), (2, 4, 6, 3))

  def loss(z, eigh):
    f = precoding._freq_first(z)
    small = jnp.einsum("...ui,...vi->...uv", f, jnp.conj(f))
    lam, U = eigh(0.5 * (small + jnp.conj(jnp.swapaxes(small, -1, -2))))
    W = precoding._freq_last(jnp.einsum("...ui,...us->...is", jnp.conj(f), U[..., ::-1][..., :2])
                             * jax.lax.rsqrt(lam[..., ::-1][..., :2])[..., None, :])
    return jnp.sum(precoding.received_energy(H, W))

  g_ours = jax.grad(lambda z: jnp.sum(precoding.received_energy(H, precoding.latent_precoder(z, 2))))(Z)
  g_ref = jax.grad(lambda z: loss(z, jnp.linalg.eigh))(Z)
  # Distinct eigenvalues: the broadening 1e-6 max|w| changes 1 / gap by a relative (s / gap)^2, far below float32.
  np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_ref), rtol=1e-3, atol=1e-4)
  Z0 = Z.at[:, 2:].set(0.0)                       # two zero rows: eigenvalue 0 twice
  assert bool(jnp.all(jnp.isfinite(jnp.abs(jax.grad(
      lambda z: jnp.sum(precoding.received_energy(H, precoding.latent_precoder(z, 2))))(Z0)))))


def _lapack_calls(fn, *args, **kw) -> int:
  hlo = fn.lower(*args, **kw).compile().as_text()          # after inlining: each call site counts
  return hlo.count('custom_call_target="lapack_')           # jaxlib's LAPACK kernels (lapack_cgesdd_ffi, ...)


def test_staged_precoders_are_the_direct_ones_with_one_lapack_call_per_program():
  from jaxchan import staged_precoding
  k = jax.random.split(jax.random.PRNGKey(3), 4)
  H, est = _channels(k[0]), _channels(k[1])
  samples = conventions.standard_normal(k[2], (5, 3, N_UE, N_BS, N_F))
  G_hist = precoding.gramian(samples)[..., 0]                                     # [3, n_bs, n_bs] wideband
  G_avg = precoding.average_gramian(_channels(k[3], (7,)))
  W = staged_precoding.classical_precoders(H, est, G_hist, G_avg, jax.random.PRNGKey(4), 2)
  direct = {"perfect_csi": precoding.svd_precoder(H, 2), "srs_baseline": precoding.svd_precoder(est, 2),
            "sample_cov": precoding.wideband_precoder(G_hist, 2, N_F),
            "avg_gramian": jnp.broadcast_to(precoding.precoder_from_gramian(G_avg, 2), (3, N_BS, 2, N_F)),
            "uniform": precoding.random_precoder(jax.random.PRNGKey(4), (3,), N_BS, 2, N_F)}
  assert set(W) == set(direct) == set(precoding.CLASSICAL_LABELS)
  # The same subspaces (eigenvectors are defined up to a phase per column); 1e-4 on unit-norm projectors is float32
  # LAPACK's rounding at these eigengaps (Gaussian matrices), far below any other subspace's distance (O(1)).
  for name, w in direct.items():
    np.testing.assert_allclose(_projector(W[name]), _projector(w), atol=1e-4, err_msg=name)
  # One Cholesky call for every precoder at several SNRs, each the direct eq. (25).
  snr = jnp.stack([jnp.full((3,), 10.0), jnp.asarray([1.0, 3.0, 100.0])])
  se = staged_precoding.spectral_efficiencies(H, W, snr)
  for name in W:
    assert se[name].shape == (2, 3)
    for i in range(2):
      # The same Cholesky of the same matrices, batched differently: float32 rounding only.
      np.testing.assert_allclose(se[name][i], precoding.spectral_efficiency(H, W[name], snr[i]), rtol=1e-5)
  # The point of the module: each program holds exactly one LAPACK call, whatever it is given.
  assert _lapack_calls(staged_precoding.svd_precoders, {"a": H, "b": est}, n_streams=2) == 1
  grams = {"a": precoding.gramian(samples), "b": G_avg[None].repeat(3, 0)}
  assert _lapack_calls(staged_precoding.gramian_precoders, grams, n_streams=2) == 1
  assert _lapack_calls(staged_precoding.spectral_efficiencies, H, W, snr) == 1
  with pytest.raises(ValueError, match="same shape"):
    staged_precoding.svd_precoders({"a": H, "b": H[:2]}, 2)
  with pytest.raises(ValueError, match="one name"):
    staged_precoding.precoders({"a": H}, {"a": precoding.gramian(samples)}, 2)
