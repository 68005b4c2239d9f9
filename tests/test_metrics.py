import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import conventions, metrics


def test_nmse_known_values():
  h = jnp.array([[1.0 + 0j, 1.0], [2.0, 0.0]])
  h_hat = jnp.array([[1.0 + 1j, 1.0], [1.0, 0.0]])
  np.testing.assert_allclose(metrics.nmse_per_sample(h, h_hat), [0.5, 0.25])
  # Dataset level is a ratio of sums: (1 + 1) / (2 + 4), not the mean of ratios.
  np.testing.assert_allclose(metrics.nmse(h, h_hat), 2.0 / 6.0)
  np.testing.assert_allclose(metrics.nmse_db(h, 0 * h), 0.0, atol=1e-6)
  np.testing.assert_allclose(metrics.to_db(jnp.array(0.01)), -20.0, rtol=1e-6)
  np.testing.assert_allclose(metrics.from_db(-20.0), 0.01, rtol=1e-6)


def test_nmse_zero_reference_is_not_nan():
  z = jnp.zeros((2, 3), jnp.complex64)
  out = metrics.nmse_per_sample(z, z.at[1, 0].set(1.0))
  assert float(out[0]) == 0.0 and np.isinf(float(out[1]))


def test_gcs_invariant_to_complex_scale_and_orthogonal_zero():
  h = conventions.standard_normal(jax.random.PRNGKey(0), (2, 3, 8, 5))
  np.testing.assert_allclose(metrics.gcs(h, (0.3 - 2j) * h), 1.0, rtol=1e-5)
  np.testing.assert_allclose(metrics.sgcs(h, (0.3 - 2j) * h), 1.0, rtol=1e-5)
  e = jnp.zeros((1, 1, 2, 1), jnp.complex64)
  a, b = e.at[0, 0, 0, 0].set(1.0), e.at[0, 0, 1, 0].set(1j)
  assert float(metrics.gcs(a, b)) == 0.0
  # Zero estimate: 0, not NaN.
  assert float(metrics.gcs(a, e)) == 0.0


def test_gcs_known_angle():
  # Vectors at 60 degrees: GCS = cos 60 = 0.5, SGCS = 0.25; reduced along BS axis (-2).
  a = jnp.array([[[1.0 + 0j], [0.0]]])                 # [n_ue=1, n_bs=2, n_freq=1]
  b = jnp.array([[[0.5 + 0j], [np.sqrt(3) / 2]]])
  np.testing.assert_allclose(metrics.gcs(a, b), 0.5, rtol=1e-6)
  np.testing.assert_allclose(metrics.sgcs(a, b), 0.25, rtol=1e-6)
  assert metrics.gcs(a, b, reduce="none").shape == (1, 1)


def test_metrics_reject_shape_mismatch():
  with pytest.raises(ValueError, match="no broadcasting"):
    metrics.nmse(jnp.ones((2, 3)), jnp.ones((3,)))
  with pytest.raises(ValueError, match="reduce"):
    metrics.gcs(jnp.ones((2, 3)), jnp.ones((2, 3)), reduce="max")


def test_metrics_jit_vmap():
  h = conventions.standard_normal(jax.random.PRNGKey(1), (4, 2, 8, 3))
  hh = h + 0.1 * conventions.standard_normal(jax.random.PRNGKey(2), h.shape)
  per = jax.vmap(lambda a, b: metrics.nmse(a, b))(h, hh)
  np.testing.assert_allclose(per, jax.jit(metrics.nmse_per_sample)(h, hh), rtol=1e-5)
