# %% [markdown]
# # jaxchan quickstart
#
# Runs top to bottom on a CPU (a Colab CPU runtime or a laptop) in a few minutes; CI executes it.
#
# 1. **Non-identical diffusion with an exact denoiser.** Under a Gaussian-mixture prior the denoiser `D(g, tau)`
#    of the non-identical paper is known in closed form (`jaxchan.oracle`), so generation can be checked against
#    the exact posterior mean before any network is trained.
# 2. **Water-filling time steps**: each element starts at its own diffusion time `tau0` and the water-filling rule
#    brings the noisiest elements down first.
# 3. **Bayesian precoding** (perception paper, eq. 28) from K posterior samples against precoding on the
#    posterior mean, with the exact posterior Gramian as the K -> infinity reference.
# 4. **Your own channels**: a numpy array -> a jaxchan dataset -> a `:smoke` training run -> `load_trained` ->
#    estimates, and `export` to a MATLAB file.
#
# Set-up (a fresh Colab runtime): clone the repository, then `pip install -e ".[datagen]"` in it (the README's
# install command; `datagen` is needed only to build Sionna datasets, not for this notebook).
# This file is the notebook's source (percent format); `python examples/make_notebook.py` writes
# `examples/quickstart.ipynb` from it.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxchan import conventions, data, lmmse, metrics, noise_patterns, noniden, oracle, precoding, schedules, stepping

schedule = schedules.GammaSchedule(T=100, beta_max=0.2)    # the gamma(tau) schedule of eq. (10)
workdir = tempfile.mkdtemp(prefix="jaxchan_quickstart_")
print("jax", jax.__version__, "on", jax.devices()[0], "| outputs in", workdir)

# %% [markdown]
# ## 1. Non-identical generation with the exact denoiser
#
# 256 channels of 4 antennas x 8 subcarriers from a random 3-component complex GMM, observed through the
# paper's exponential noise pattern (every element its own SNR, mean -5 dB). `noniden.initial_state` turns the
# reliability map `m` into per-element start times `tau0`; generation then runs 20 water-filling steps with
# the exact `D`. Reference points: the start itself, and the exact posterior mean (the MMSE estimate; a single
# posterior sample has about twice its error, the mean of many samples approaches it).

# %%
n_a, n_c, B = 4, 8, 256
gmm = oracle.random_mixture(jax.random.PRNGKey(1), n_a * n_c, num_components=3)
h = oracle.sample(gmm, jax.random.PRNGKey(2), B).reshape(B, n_a, n_c)
obs = noise_patterns.observe(h, jax.random.PRNGKey(3), "exp", schedule)      # h_bar = m h + n (eq. 14)
start = noniden.initial_state(obs.h_bar, obs.m, schedule)
generate = noniden.make_generator(oracle.denoiser(gmm, schedule), schedule, num_steps=20,
                                  stepping=stepping.Stepping.parse("tau-waterfilling"))
samples = jnp.stack([generate(start, jax.random.PRNGKey(10 + i)) for i in range(8)])   # 8 draws per channel
cme = jax.vmap(lambda y, m: oracle.posterior_mean(gmm, y, jnp.diag(m.astype(y.dtype)), jnp.eye(n_a * n_c)))(
    obs.h_bar.reshape(B, -1), obs.m.reshape(B, -1)).reshape(B, n_a, n_c)
rows = {"start g0": start.g0, "one sample": samples[0], "mean of 8 samples": samples.mean(0),
        "exact posterior mean": cme}
nmse_db = {k: float(metrics.nmse_db(h, v)) for k, v in rows.items()}
for k, v in nmse_db.items():
  print(f"{k:>22}: NMSE {v:6.2f} dB")

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(list(nmse_db), list(nmse_db.values()), color=["#999999", "#0072B2", "#56B4E9", "#009E73"])
ax.set_xlabel("NMSE (dB)")
ax.set_title("Exact-denoiser generation, exp pattern, 20 water-filling steps")
ax.grid(axis="x", alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Water-filling time steps
#
# The time path depends only on `tau0`: the elements with the largest start time (the least reliable) come down
# first, until all share one level, and then fall together to 0.

# %%
path = stepping.tau_trajectory(start.tau0[0], stepping.Stepping.parse("tau-waterfilling"), schedule, 20)
flat = np.asarray(path).reshape(21, -1)
pick = np.argsort(flat[0])[np.linspace(0, flat.shape[1] - 1, 6).astype(int)]
fig, ax = plt.subplots(figsize=(6, 3))
for i, e in enumerate(pick):
  ax.plot(flat[:, e], marker="os^vDx"[i], markersize=3, label=f"element {e} (tau0 = {flat[0, e]:.0f})")
ax.set_xlabel("generation step")
ax.set_ylabel("diffusion time tau")
ax.set_title("tau-waterfilling, one channel's elements")
ax.grid(alpha=0.3)
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Bayesian precoding from K posterior samples
#
# A clustered mixture (each component a user cluster with a low-rank BS covariance) over 2 UE antennas x 16 BS
# antennas x 4 subcarriers, seen through heavy noise (-5 dB). Eq. (28)'s Bayesian precoder takes the dominant
# eigenvectors of the Gramian averaged over K posterior samples; as K grows it converges to the precoder of the
# exact posterior Gramian (`oracle.expected_gramian`), which maximizes the expected received energy. The SVD of
# the posterior mean and perfect CSI are the reference lines. SE at 10 dB DL SNR, 2 streams. (With this prior
# the posterior mean's SVD happens to come close to the Bayesian precoder; the perception experiment's README
# section measures the gap on Sionna channels.)

# %%
shape = (2, 16, 4)
d = int(np.prod(shape))
prior = oracle.clustered_mixture(jax.random.PRNGKey(5), shape, num_components=4)
Bp = 32
H = oracle.sample(prior, jax.random.PRNGKey(6), Bp)                         # [Bp, d]
noise_var = 10 ** 0.5                                                      # -5 dB SNR
y = H + jnp.sqrt(noise_var) * conventions.standard_normal(jax.random.PRNGKey(7), H.shape, H.dtype)
A, N = jnp.eye(d, dtype=H.dtype), noise_var * jnp.eye(d)
keys = jax.random.split(jax.random.PRNGKey(8), Bp)
post_samples = jax.vmap(lambda yy, k: oracle.posterior_sample(prior, yy, A, N, k, 32))(y, keys)   # [Bp, 32, d]
post_mean = jax.vmap(lambda yy: oracle.posterior_mean(prior, yy, A, N))(y)
G_exact = jax.vmap(lambda yy: oracle.expected_gramian(oracle.posterior(prior, yy, A, N), shape))(y)
Hc = H.reshape((Bp,) + shape)
se = lambda W: float(jnp.mean(precoding.spectral_efficiency(Hc, W, 10.0)))   # noqa: E731
ks = [1, 2, 4, 8, 16, 32]
se_bayes = [se(precoding.bayesian_precoder(jnp.moveaxis(post_samples[:, :k], 1, 0).reshape((k, Bp) + shape), 2))
            for k in ks]
ref = {"perfect CSI (SVD of H)": se(precoding.svd_precoder(Hc, 2)),
       "exact posterior Gramian (K = inf)": se(precoding.precoder_from_gramian(G_exact, 2)),
       "SVD of the posterior mean": se(precoding.svd_precoder(post_mean.reshape((Bp,) + shape), 2))}
for k, v in ref.items():
  print(f"{k:>34}: {v:.3f} bit/s/Hz")
print("Bayesian precoder, K =", dict(zip(ks, np.round(se_bayes, 3))))

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.semilogx(ks, se_bayes, marker="o", color="#0072B2", label="Bayesian precoder, K samples (eq. 28)")
for (k, v), (c, ls) in zip(ref.items(), [("#000000", "-"), ("#009E73", "--"), ("#D55E00", ":")]):
  ax.axhline(v, color=c, ls=ls, label=k)
ax.set_xticks(ks, [str(k) for k in ks])
ax.set_xlabel("posterior samples K")
ax.set_ylabel("SE (bit/s/Hz)")
ax.set_title("Precoding from an exact posterior, 10 dB DL SNR, 2 streams")
ax.grid(alpha=0.3)
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Your own channels: import, train, estimate, export
#
# Any complex array `[N, n_bs, n_freq]` (or with a UE-antenna axis, or in another axis order: see
# `datagen.from_numpy`) becomes a jaxchan dataset. Here: 600 synthetic two-path channels of a 8-antenna ULA over
# 16 subcarriers. The `noniden:smoke` config trains the non-identical model briefly (1 epoch, a tiny
# network: a pipeline check, not a converged model; `:quick` and the paper-scale config train for real).

# %%
from datagen import from_numpy  # noqa: E402

import configs  # noqa: E402
from jaxchan import export  # noqa: E402
from jaxchan.experiments import noniden as noniden_exp  # noqa: E402

rng = np.random.default_rng(0)
N, n_bs, n_freq = 600, 8, 16
theta = rng.uniform(-np.pi / 3, np.pi / 3, (N, 2))                     # two paths per channel
delay = rng.uniform(0, 1, (N, 2))
gain = (rng.normal(size=(N, 2)) + 1j * rng.normal(size=(N, 2))) / np.sqrt(2)
steer = np.exp(1j * np.pi * np.arange(n_bs)[None, None, :] * np.sin(theta)[..., None])        # [N, 2, n_bs]
phase = np.exp(-2j * np.pi * delay[..., None] * np.arange(n_freq)[None, None, :])            # [N, 2, n_freq]
H_mine = np.einsum("np,npa,npf->naf", gain, steer, phase).astype(np.complex64)               # [N, n_bs, n_freq]

dataset = os.path.join(workdir, "my_channels.h5")
from_numpy.import_arrays(dataset, h=H_mine, num_test=100)

config = configs.get("noniden:smoke")
with config.unlocked():
  config.data.path, config.data.n_bs, config.data.n_freq = dataset, n_bs, n_freq
  config.progress = False
  config.train.num_epochs = 1
  config.models = {"nonid": config.models.nonid}
  config.eval.models, config.eval.full_grid_models, config.eval.compare_identical = (), (), ""
  config.eval.lmmse = False
noniden_exp.run(config, os.path.join(workdir, "run"))

den, params, info = noniden_exp.load_trained(os.path.join(workdir, "run", "models", "nonid"))
with data.Dataset(dataset) as ds:
  h_test = jnp.asarray(ds.load("test")["h"][:64])
obs = noise_patterns.observe(h_test, jax.random.PRNGKey(11), "pilot", den.schedule)
gen = noniden.make_network_generator(den, num_steps=10)
h_hat = gen(params, noniden.initial_state(obs.h_bar, obs.m, den.schedule), jax.random.PRNGKey(12))
# The classical baseline: LMMSE with the training set's sample mean and covariance.
with data.Dataset(dataset) as ds:
  mu, cov = lmmse.sample_moments(jnp.asarray(ds.load("train")["h"]))
h_lmmse = lmmse.estimate(obs.h_bar, obs.m, mu, cov)
print(f"pilot pattern NMSE: start {float(metrics.nmse_db(h_test, obs.g0)):.2f} dB, "
      f"generated in 10 steps {float(metrics.nmse_db(h_test, h_hat)):.2f} dB (a 1-epoch model), "
      f"LMMSE {float(metrics.nmse_db(h_test, h_lmmse)):.2f} dB")

mat = os.path.join(workdir, "estimates.mat")
export.export(os.path.join(workdir, "run", "models", "nonid"), dataset, mat, num=32, pattern="pilot", num_steps=10)
arrays, settings = export.read(mat)
print("exported", {k: v.shape for k, v in arrays.items()}, "to", mat)
