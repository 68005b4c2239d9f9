"""The non-identical experiment's config turned into values: the schedule, steppings and samplers, the models,
their denoisers and losses, and loading a trained model. The experiment's helpers (evaluation, report) take
their values from here, so none of them imports the experiment back.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import denoiser, gaussian_prior, noniden, schedules, stepping, tau_patterns
from jaxchan.experiments import common
from jaxchan.models.mixer import MixerDenoiser

#: The anchored model's Gaussian prior, saved beside its checkpoints (KroneckerGaussian.to_numpy).
PRIOR_FILE = "prior.npz"
#: Test-set sizes a config asks for; each must fit the dataset's test split.
SIZE_FIELDS = ("eval.num_test", "train.test_loss_samples")
# The model-config fields that make two models of one tau pattern different networks: embedding placement,
# averaging and input normalization (Table I's axes besides the pattern).
ARCH_FIELDS = ("placement", "averaging", "input_norm")


def arch(m) -> tuple:
  """A model's (placement, averaging, input normalization), from its config or its results.json entry."""
  return tuple(m[f] for f in ARCH_FIELDS)


def schedule(config) -> schedules.GammaSchedule:
  """The gamma schedule (eq. 10) of ``config.T`` and ``config.beta_max``."""
  with common.field("config.T / config.beta_max"):
    return schedules.GammaSchedule(config.T, config.beta_max)


def steppings(config) -> list[stepping.Stepping]:
  if not config.eval.steppings:
    raise ValueError("config.eval.steppings is empty; give at least one, e.g. ('tau-waterfilling',).")
  with common.field("config.eval.steppings"):
    return [stepping.Stepping.parse(s) for s in config.eval.steppings]


def samplers(config) -> list[noniden.Sampler]:
  if not config.eval.samplers:
    raise ValueError("config.eval.samplers is empty; give at least one, e.g. ('eta:1.0',).")
  with common.field("config.eval.samplers"):
    return [noniden.Sampler.parse(s) for s in config.eval.samplers]


def check_training_times(config, name: str, sch: schedules.GammaSchedule):
  """Model ``name``'s smallest training time against the input floor (:func:`jaxchan.noniden.check_training_times`)."""
  m = config.models[name]
  with common.field(f"config.models.{name}.tau_min / config.train.tau_min / config.min_beta"):
    noniden.check_training_times(m.get("tau_min", config.train.tau_min), config.min_beta or None, sch)


def make_model(mcfg, sch: schedules.GammaSchedule) -> MixerDenoiser:
  return MixerDenoiser(num_layers=mcfg.num_layers, expansion=mcfg.expansion, embed_dim=mcfg.embed_dim,
                       placement=mcfg.placement, averaging=mcfg.averaging, schedule=sch,
                       zero_head=mcfg.get("anchor", "none") != "none")


def make_denoiser(mcfg, config, sch, prior=None) -> denoiser.VelocityDenoiser:
  """The model's :class:`~jaxchan.denoiser.VelocityDenoiser` (``prior``: its Gaussian anchor, or None)."""
  return denoiser.make(make_model(mcfg, sch), sch, input_norm=mcfg.input_norm, min_beta=config.min_beta or None,
                       prior=prior, tol=config.anchor.tol, max_iter=config.anchor.max_iter)


def loss_fn(den: denoiser.VelocityDenoiser, mcfg, config):
  """``(params, h, key) -> velocity loss`` of Algorithm 1 with the model's tau pattern."""
  tau_min = mcfg.get("tau_min", config.train.tau_min)

  def loss(params, h, key):
    k_tau, k_xi = jax.random.split(key)
    tau = tau_patterns.sample(k_tau, mcfg.tau_pattern, h.shape[0], h.shape[1:], den.schedule.T, tau_min=tau_min)
    return den.loss(params, h, tau, k_xi)

  return loss


def check_resume(model_dir: str, anchor: str, tau_pattern: str | None = None):
  """Refuse to continue a checkpoint trained with another anchor (its parameters mean something else) or on
  another tau pattern (the training distribution would change mid-run)."""
  path = os.path.join(model_dir, "model.json")
  if os.path.exists(path):
    with open(path) as f:
      info = json.load(f)
    old = info.get("denoiser", {}).get("anchor", "none")
    if old != anchor:
      raise ValueError(f"{model_dir} holds a model trained with anchor {old!r}; this config asks for {anchor!r}. "
                       "Use another --workdir, or the config that trained it.")
    old_pattern = info.get("model", {}).get("tau_pattern")
    if tau_pattern is not None and old_pattern is not None and old_pattern != tau_pattern:
      raise ValueError(f"{model_dir} holds a model trained on tau pattern {old_pattern!r}; this config asks for "
                       f"{tau_pattern!r}. Use another --workdir, or --config.models.NAME.tau_pattern={old_pattern}.")


def load_trained(model_dir: str, *, anchor: str | None = None):
  """A trained model from ``WORKDIR/models/NAME``: ``(denoiser, params, info)``.

  ``denoiser`` is the :class:`~jaxchan.denoiser.VelocityDenoiser` it was trained as (network, schedule, input
  normalization, Gaussian anchor with its saved prior); ``info`` is its ``model.json``. ``anchor``, if given,
  must match the one the model was trained with. Use it as::

    den, params, info = load_trained("workdir/noniden_quick/models/nonid")
    start = noniden.initial_state(h_bar, m, den.schedule)
    h_hat = noniden.make_generator(den.bind(params), den.schedule, num_steps=50)(start, key)
  """
  import ml_collections

  def build(info):
    if "denoiser" not in info:
      raise ValueError(f"{model_dir}/model.json has no 'denoiser' field (its schedule, input normalization and "
                       "anchor): it was written by an older jaxchan; retrain the model with this version.")
    d = info["denoiser"]
    if anchor is not None and d["anchor"] != anchor:
      raise ValueError(f"{model_dir} was trained with anchor {d['anchor']!r}, not {anchor!r}; load it with "
                       f"anchor={d['anchor']!r} or train a model with anchor {anchor!r}.")
    sch = schedules.GammaSchedule.from_dict(d["schedule"])
    info["schedule"] = sch
    prior = None
    if d["anchor"] != "none":
      path = os.path.join(model_dir, PRIOR_FILE)
      if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the model is anchored ({d['anchor']!r}) and needs the prior it "
                                "was trained with.")
      with np.load(path) as z:
        prior = gaussian_prior.from_numpy(z, shape=tuple(info["shape"]))
    mcfg = ml_collections.ConfigDict(info["model"])
    den = denoiser.make(make_model(mcfg, sch), sch, input_norm=d["input_norm"], min_beta=d["min_beta"], prior=prior,
                        tol=d["solver"]["tol"], max_iter=d["solver"]["max_iter"])
    shape = (1,) + tuple(info["shape"])
    return den, jax.jit(den.network.init)(jax.random.PRNGKey(0), jnp.zeros(shape, jnp.complex64), jnp.zeros(shape))

  return common.load_trained(model_dir, build, "WORKDIR/models/NAME")


def load_test_channels(info: dict, data_path: str, num: int | None = None) -> jax.Array:
  """The first ``num`` (all: ``None``) test channels ``[num, N_a, N_c]`` of the snapshot dataset ``data_path``,
  refused unless they have the shape the model was trained on (``info``, as :func:`load_trained` returns it)."""
  from jaxchan import data as data_lib
  with data_lib.Dataset(data_path, kind="snapshot") as ds:
    h = ds.load("test")["h"]
    h = jnp.asarray(h[:num] if num is not None else h)
  if tuple(h.shape[1:]) != tuple(info["shape"]):
    raise ValueError(f"{data_path} holds channels {tuple(h.shape[1:])} but the model was trained on "
                     f"{tuple(info['shape'])}; pass the dataset the model was trained on.")
  return h
