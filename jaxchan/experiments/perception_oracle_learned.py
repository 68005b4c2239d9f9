"""The learned half of the exact-posterior experiment: the perception backbone trained on the GMM prior.

The SL (MSE) and the DM (v prediction, classifier-free guidance) see channels drawn
from the experiment's prior through its observation
(:func:`jaxchan.experiments.perception_oracle.srs_view`), trained with the shared loop
(checkpoints, resume) on fresh draws every step; :func:`make_learned_precoders` scores them
on the same channels as the exact precoders.
"""

from __future__ import annotations

import functools
import os

import jax

from jaxchan import files, precoding, prediction, schedules, train
from jaxchan.experiments import common
from jaxchan.experiments.perception_oracle_setup import (LEARNED_USES, draw, exact_cme_mse, mixture_rows,
                                                            moment_matched, row_covariance, srs_view)
from jaxchan.models.transformer import ChannelTransformer, prior_cov_field, prior_mix_field


#: The DM's cosine schedule offset and clip (cosine_schedule's defaults), also handed to the anchored DM.
COSINE_S, MAX_BETA = 0.008, 0.999


def learned_model(config, use: str, prior, fitted=None) -> ChannelTransformer:
  """The backbone for ``use``; ``config.learned.anchor = "prior"`` anchors it on the exact conditional Gaussian
  under ``prior``'s moment-matched covariance (the untrained model is the Gaussian baseline), ``"mixture"`` on the
  exact posterior under ``fitted``, the mixture fitted on draws (:func:`jaxchan.experiments.perception_oracle.fit_anchor`;
  the untrained model is that mixture's CME or posterior sampler), ``"none"`` is the paper's network."""
  L = config.learned
  n_ue, n_bs, n_freq = config.shape
  anchor = L.get("anchor", "none")
  extra = {}
  if anchor == "prior":
    extra = dict(prior_cov=prior_cov_field(row_covariance(prior, tuple(config.shape))),
                 dm_schedule=(L.T, COSINE_S, MAX_BETA), prediction=L.prediction)
  elif anchor == "mixture":
    if fitted is None:
      raise ValueError("config.learned.anchor='mixture' needs the mixture fitted on draws (fitted=...).")
    extra = dict(prior_mix=prior_mix_field(*mixture_rows(fitted, tuple(config.shape))),
                 dm_schedule=(L.T, COSINE_S, MAX_BETA), prediction=L.prediction)
  return ChannelTransformer(n_occ=1, n_ue=n_ue, n_bs=n_bs, n_prb=n_freq, num_hops=n_freq // config.sounded,
                            ue_per_token=L.ue_per_token, use=use, d_model=L.d_model, num_heads=L.num_heads,
                            enc_layers=L.layers, dec_layers=L.layers, mlp_ratio=L.mlp_ratio, anchor=anchor, **extra)


def learned_schedule(config):
  return schedules.cosine_schedule(config.learned.T, s=COSINE_S, max_beta=MAX_BETA)


def train_learned(config, prior, use: str, model_dir: str, log=common.log, fitted=None):
  """Train the SL or DM backbone on fresh draws from ``prior`` (every batch new; an "epoch" is
  ``config.learned.steps_per_epoch`` steps). Returns ``(model, params, history, floor)``; for the SL,
  ``floor["exact_cme_mse"]`` is the exact CME's loss on the same 1,024 test draws (:func:`exact_cme_mse`), with
  the Gaussian baseline's and (given ``fitted``, the mixture fitted on draws) the fitted mixture's CME's."""
  from jaxchan.experiments import common, perception_setup as perception
  L, shape = config.learned, tuple(config.shape)
  model = learned_model(config, use, prior, fitted)
  # A checkpoint trained with another anchor is refused (its residual means something else); model.json says
  # which anchor the checkpoints in model_dir belong to. Checkpoints without it predate the anchor: "none".
  meta = os.path.join(model_dir, "model.json")
  if not os.path.exists(meta) and os.path.isdir(os.path.join(model_dir, "checkpoints")):
    files.atomic_write_json(meta, {"anchor": "none"})
  perception.check_resume(model_dir, model.anchor, "config.learned.anchor")
  os.makedirs(model_dir, exist_ok=True)
  if not os.path.exists(meta):
    files.atomic_write_json(meta, {"anchor": model.anchor})
  kw = dict(shape=shape, sounded=config.sounded, rho=config.rho)
  sample = jax.jit(functools.partial(draw, prior, num=L.batch_size, snr_db_range=tuple(L.snr_db_range), **kw))
  view = lambda y, s2: srs_view(y, shape, config.sounded, config.rho, s2)  # noqa: E731

  def loss(params, batch, key):
    obs = view(batch["y"], batch["sigma2"])
    if use == "sl":
      return prediction.sl_objective(model, params, batch["h"], obs, key)
    return prediction.dm_objective(model, params, batch["h"], obs, key, learned_schedule(config),
                                   p_uncond=L.p_uncond, prediction=L.prediction)

  data_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1000 + LEARNED_USES.index(use))

  def batches(epoch):
    for i in range(L.steps_per_epoch):
      h, y, s2 = sample(jax.random.fold_in(jax.random.fold_in(data_key, epoch), i))
      yield {"h": h, "y": y, "sigma2": s2}

  h_t, y_t, s2_t = jax.jit(functools.partial(draw, prior, num=1024, snr_db_range=tuple(L.snr_db_range), **kw))(
      jax.random.fold_in(data_key, 10**6))
  test = {"h": h_t, "y": y_t, "sigma2": s2_t}
  floor = {}
  if use == "sl":
    floor["exact_cme_mse"] = exact_cme_mse(prior, h_t, y_t, s2_t, **kw)
    # The Gaussian baseline's loss (the LMMSE under the prior's covariance; the untrained anchored SL's).
    floor["gaussian_mse"] = exact_cme_mse(moment_matched(prior), h_t, y_t, s2_t, **kw)
    if fitted is not None:
      floor["mixture_mse"] = exact_cme_mse(fitted, h_t, y_t, s2_t, **kw)
    log(f"  exact CME loss on the same test draws (the SL's floor): {floor['exact_cme_mse']:.4f}; the Gaussian "
        f"(LMMSE) baseline's: {floor['gaussian_mse']:.4f}"
        + (f"; the EM-fitted mixture's CME: {floor['mixture_mse']:.4f}" if fitted is not None else ""))
  k_test, k_init, k_train = jax.random.split(common.key(config, f"perception_oracle/{use}"), 3)
  test_loss = jax.jit(lambda p: loss(p, test, k_test))
  opt = train.step_decay_adam(L.lr, steps_per_epoch=L.steps_per_epoch, decay_every_epochs=L.decay_every_epochs,
                              decay_factor=L.decay_factor)
  params = perception.init_params(model, k_init)
  state = train.init_state(params, opt, k_train)
  state, history = train.fit(state, train.make_train_step(loss, opt), batches, num_epochs=L.epochs[use],
                             workdir=model_dir, evaluate=train.Evaluation(lambda p: {"test_loss": test_loss(p)}),
                             report=train.Report(f"oracle {use}", config.progress, log))
  return model, state.best_params, history, floor


def make_learned_precoders(config, models, n_streams):
  """``(y, sigma2, key) -> ({"sl": W, "dm_bayes": W}, sl_estimate)`` for observations ``y`` ``[B, m]`` at noise
  ``sigma2``: the SL's and the DM's programs one after the other, each one chain of LAPACK calls
  (:mod:`jaxchan.staged_precoding` says why)."""
  L, shape = config.learned, tuple(config.shape)
  m_sl, p_sl = models["sl"]
  m_dm, p_dm = models["dm"]

  @jax.jit
  def sl(y, sigma2):
    est = prediction.sl_predict(m_sl, p_sl, srs_view(y, shape, config.sounded, config.rho, sigma2))
    return precoding.svd_precoder(est, n_streams), est

  @jax.jit
  def dm(y, sigma2, key):
    samples = prediction.sample_posterior(m_dm, p_dm, srs_view(y, shape, config.sounded, config.rho, sigma2), key,
                                          learned_schedule(config), num_samples=L.num_samples, prediction=L.prediction)
    return precoding.bayesian_precoder(samples, n_streams)

  def run(y, sigma2, key):
    W_sl, est = jax.block_until_ready(sl(y, sigma2))
    return {"sl": W_sl, "dm_bayes": jax.block_until_ready(dm(y, sigma2, key))}, est

  return run
