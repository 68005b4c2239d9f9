"""Transformer encoder/decoder for SRS-based channel prediction (perception-distortion paper, App. B).

One backbone, three uses (:mod:`jaxchan.prediction`):

* **SL** (discriminative, eq. 14): decoder queries are the target positional
  encodings only; the output is the predicted channel (an approximate CME).
* **DM** (conditional diffusion, eqs. 5-6, 12): decoder queries are the target
  positional encodings plus the embedded noisy state ``x_t`` and the step ``t``;
  the output is ``eps_hat``. The encoder runs once per observation and its memory
  is reused by every reverse step.
* **E2E**: the output is a latent channel whose Gramian gives the precoder.

Tokens. A token is the real/imaginary BS-antenna vector (``2 n_bs`` real
numbers) of one (UE antenna, PRB, time) cell, linearly embedded to
``d_model`` with a learnable additive positional encoding for its cell. The
encoder reads only the cells the SRS actually sounded (every occasion sounds
``n_prb / num_hops`` PRBs, so the token count is static), which keeps the
0-filled unsounded cells out of the attention. The decoder has one query per
(UE antenna, PRB) cell of the target.

Shapes: observations ``[B, n_occ, n_ue, n_bs, n_prb]`` with mask
``[B, n_occ, n_prb]`` (:mod:`jaxchan.srs`); channels ``[B, n_ue, n_bs, n_prb]``.

SNR conditioning. The least-squares SRS estimates carry noise of variance
``noise_var`` (0.1 to 10 over the UL SNR range), so a raw token's power says
little about the channel. Every observed token is scaled to unit power,
``y / sqrt(1 + noise_var)``, and an embedding of ``log10(noise_var)`` is added to
it: the network knows how much to trust each history.

Latest-observation path. Each decoder query also receives the embedding of the
latest observation of its own cell (the SRS baseline), and for ``sl`` and
``e2e`` the output adds ``g[age] * y_latest / (1 + noise_var)``: the per-element
Wiener shrinkage of that observation with a learned complex gain per age
(``g``, one per SRS occasion, initialized at 0). The CME of a channel that has
not aged is then one gain away, where before the network had to rebuild it
through attention.

Token width. A token of ``2 n_bs ue_per_token`` reals enters through a linear
map to ``d_model``; wider tokens would make that map (and the DM's read-in of
``x_t``) rank-deficient, so the epsilon prediction could not depend on part of
the state. Such configs are refused.

Gaussian anchor (``anchor="gaussian"``). The output adds the closed-form Gaussian predictor's term
(:mod:`jaxchan.gaussian_predictor`, with the per-occasion correlation ``age_corr`` fitted on the
training set) and the head starts at zero, so the untrained model *is* the classical estimator and
training learns only a residual: ``sl`` adds the conditional mean ``E[h | y]``; ``e2e`` adds a latent
whose Gramian has the dominant eigenvectors of ``E[H^H H | y]`` (the ``K -> infinity`` Gaussian
Bayesian precoder); ``dm`` adds the ``v`` (or ``eps``) of the exact posterior mean of ``h`` given
``x_t`` under the conditional Gaussian, so the untrained DM samples that Gaussian. ``"none"`` is the
paper's network, a labelled ablation. ``anchor="prior"`` does the same with the exact conditional Gaussian
under a known prior covariance (:func:`jaxchan.gaussian_predictor.under_prior`), for problems whose prior is
known (:mod:`jaxchan.experiments.perception_oracle`); its null condition is that prior. ``anchor="mixture"``
(``sl`` and ``dm``) anchors on the exact posterior under a Gaussian-mixture prior of the rows instead
(:func:`jaxchan.gaussian_predictor.under_mixture`, e.g. one fitted on training channels): ``sl`` adds its CME,
``dm`` the ``v`` of :func:`jaxchan.gaussian_predictor.mixture_denoise`.

Classifier-free guidance: ``drop`` (``[B]`` bool) replaces every encoder token
embedding of those samples by one learned null embedding, and zeroes their
latest-observation path, so the decoder sees no information about the
observation (the paper's "null token").

Departures we chose, since the paper's Table IV lost its numbers: pre-layer-norm
blocks (stabler without warm-up than the original post-norm) and a sinusoidal
step embedding followed by a two-layer MLP, added to every decoder query.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxchan import ddpm, gaussian_predictor, schedules, srs

USES = ("sl", "dm", "e2e")
ANCHORS = ("gaussian", "prior", "mixture", "none")


def token_width(n_bs: int, ue_per_token: int) -> int:
  """Reals per token: ``2 n_bs`` (real and imaginary BS-antenna vector) per UE antenna in the token."""
  return 2 * n_bs * ue_per_token


def check_token_width(n_bs: int, ue_per_token: int, d_model: int, where: str = "ue_per_token"):
  """Refuse tokens wider than ``d_model``: their linear read-in would be rank-deficient."""
  width = token_width(n_bs, ue_per_token)
  if width > d_model:
    fits = [g for g in range(1, ue_per_token + 1) if token_width(n_bs, g) <= d_model]
    raise ValueError(
        f"{where}={ue_per_token} makes tokens of 2 x n_bs x ue_per_token = {width} reals, wider than "
        f"d_model={d_model}: the read-in of the observation and of the DM's state x_t would have rank "
        f"<= {d_model} < {width}, so part of x_t could never be seen. Use ue_per_token in "
        f"{fits or '(none: raise d_model)'} or d_model >= {width}.")


def to_tokens(cells: jax.Array, ue_per_token: int = 1) -> jax.Array:
  """Patch channels into real tokens.

  ``[..., n_ue, n_cells, n_bs]`` complex -> ``[..., n_ue / g, n_cells, g * 2 n_bs]``
  real with ``g = ue_per_token``: each token holds the real parts then the
  imaginary parts of the BS-antenna vector of ``g`` consecutive UE antennas.
  """
  g = ue_per_token
  lead, (n_ue, n_cells, n_bs) = cells.shape[:-3], cells.shape[-3:]
  x = jnp.concatenate([cells.real, cells.imag], axis=-1).reshape(lead + (n_ue // g, g, n_cells, 2 * n_bs))
  return jnp.moveaxis(x, -3, -2).reshape(lead + (n_ue // g, n_cells, g * 2 * n_bs))


def from_tokens(tokens: jax.Array, ue_per_token: int = 1) -> jax.Array:
  """The inverse of :func:`to_tokens`: ``[..., n_ue / g, n_cells, g * 2 n_bs] -> [..., n_ue, n_cells, n_bs]``."""
  g = ue_per_token
  lead, (n_tok, n_cells, width) = tokens.shape[:-3], tokens.shape[-3:]
  n_bs = width // (2 * g)
  x = jnp.moveaxis(tokens.reshape(lead + (n_tok, n_cells, g, 2 * n_bs)), -2, -3)
  x = x.reshape(lead + (n_tok * g, n_cells, 2 * n_bs))
  return jax.lax.complex(x[..., :n_bs], x[..., n_bs:])


def sinusoidal(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """``[B] -> [B, dim]`` sinusoidal embedding of a (possibly fractional) step index."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  arg = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


def prior_cov_field(row_cov) -> tuple:
  """``row_cov`` (``[n_bs n_prb, n_bs n_prb]`` complex) as the hashable ``prior_cov`` field of
  :class:`ChannelTransformer` (``anchor="prior"``): ``(re_rows, im_rows)``."""
  c = np.asarray(row_cov, np.complex64)
  return (tuple(map(tuple, c.real.tolist())), tuple(map(tuple, c.imag.tolist())))


def prior_mix_field(log_weights, row_covs) -> tuple:
  """A mixture prior of the rows (``log_weights`` ``[K]``, ``row_covs`` ``[K, n_bs n_prb, n_bs n_prb]``) as the
  hashable ``prior_mix`` field of :class:`ChannelTransformer` (``anchor="mixture"``)."""
  w = np.asarray(log_weights, np.float64).reshape(-1)
  covs = np.asarray(row_covs, np.complex64)
  if covs.ndim != 3 or covs.shape[0] != w.size:
    raise ValueError(f"prior_mix_field needs log_weights [K] and row_covs [K, d, d]; got {w.shape} and {covs.shape}.")
  return (tuple(w.tolist()), tuple(prior_cov_field(c) for c in covs))


def _complex(field) -> jax.Array:
  return jnp.asarray(np.asarray(field[0]) + 1j * np.asarray(field[1]), jnp.complex64)


class _Block(nn.Module):
  """Pre-norm transformer block: self-attention, optional cross-attention, MLP."""
  d_model: int
  num_heads: int
  mlp_ratio: int
  dropout: float
  cross: bool

  @nn.compact
  def __call__(self, x, memory=None, *, train: bool = False):
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    h = nn.LayerNorm()(x)
    x = x + drop(nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, h))
    if self.cross:
      h = nn.LayerNorm()(x)
      x = x + drop(nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, memory))
    h = nn.LayerNorm()(x)
    h = nn.Dense(self.mlp_ratio * self.d_model)(h)
    h = nn.Dense(self.d_model)(nn.gelu(h))
    return x + drop(h)


class ChannelTransformer(nn.Module):
  """The shared encoder/decoder backbone.

  Attributes:
    n_occ, n_ue, n_bs, n_prb: the dataset's shapes.
    num_hops: SRS sub-bands; each occasion sounds ``n_prb / num_hops`` PRBs.
    ue_per_token: UE antennas per token (1, the paper's tokenization, makes a
      token per (UE antenna, PRB, time) cell; ``n_ue`` makes one per (PRB, time)
      with ``n_ue`` times longer tokens, 1/n_ue^2 of the attention cost).
    use: ``"sl"``, ``"dm"`` or ``"e2e"`` (only ``"dm"`` reads ``x_t`` and ``t``).
    d_model, num_heads, enc_layers, dec_layers, mlp_ratio, dropout: sizes.
    anchor: ``"gaussian"`` (the Gaussian predictor plus a learned residual), ``"prior"`` (the exact conditional
      Gaussian under a known prior covariance plus a learned residual), ``"mixture"`` (the exact posterior under a
      Gaussian-mixture prior of the rows plus a learned residual) or ``"none"`` (module docstring).
    age_corr: ``((re, im), ...)``, the per-occasion correlation of the Gaussian predictor (``anchor="gaussian"``).
    prior_cov: ``(re_rows, im_rows)``, the known prior covariance of one UE antenna's ``[n_bs, n_prb]`` row
      (:func:`prior_cov_field`; ``anchor="prior"``, one occasion: its soundings are the target's noisy looks).
    prior_mix: ``(log_weights, (prior_cov, ...))``, a mixture prior of the rows (:func:`prior_mix_field`;
      ``anchor="mixture"``, one occasion, ``use`` ``"sl"`` or ``"dm"``).
    dm_schedule: ``(T, cosine_s, max_beta)`` of the DM's cosine schedule (``use="dm"``, anchored).
    prediction: what the DM predicts, ``"v"`` or ``"eps"`` (the anchor's term is given in the same form).
    cov_floor: added to the conditional covariance's eigenvalues in the DM's anchor (``use="dm"``): a direction
      the predictor declares certain (variance 0) would make the anchor's ``v`` error grow as ``1 / sigma_t``
      near the data wherever the predictor is wrong; fitted on the training set
      (:func:`jaxchan.experiments.perception_setup.fit_cov_floor`).
  """
  n_occ: int
  n_ue: int
  n_bs: int
  n_prb: int
  num_hops: int = 4
  ue_per_token: int = 1
  use: str = "sl"
  d_model: int = 128
  num_heads: int = 4
  enc_layers: int = 4
  dec_layers: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.0
  anchor: str = "none"
  age_corr: tuple = ()
  prior_cov: tuple = ()
  prior_mix: tuple = ()
  dm_schedule: tuple = ()
  prediction: str = "v"
  cov_floor: float = 0.0

  def setup(self):
    if self.use not in USES:
      raise ValueError(f"use={self.use!r}; allowed: {USES}.")
    if self.n_prb % self.num_hops:
      raise ValueError(f"n_prb={self.n_prb} is not divisible by num_hops={self.num_hops}.")
    if self.d_model % self.num_heads:
      raise ValueError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}.")
    if self.n_ue % self.ue_per_token:
      raise ValueError(f"ue_per_token={self.ue_per_token} must divide n_ue={self.n_ue}.")
    check_token_width(self.n_bs, self.ue_per_token, self.d_model)
    if self.anchor not in ANCHORS:
      raise ValueError(f"anchor={self.anchor!r}; allowed: {ANCHORS} (config.model.anchor).")
    if self.anchor == "gaussian":
      if len(self.age_corr) != self.n_occ:
        raise ValueError(f"anchor='gaussian' needs age_corr with one (re, im) pair per occasion (n_occ="
                         f"{self.n_occ}); got {len(self.age_corr)}. Fit it with gaussian_predictor.fit_age_correlation.")
    if self.anchor == "prior":
      d = self.n_bs * self.n_prb
      if self.n_occ != 1 or len(self.prior_cov) != 2 or np.shape(self.prior_cov[0]) != (d, d):
        raise ValueError(f"anchor='prior' needs one SRS occasion (n_occ={self.n_occ}) and prior_cov=(re, im) of "
                         f"shape ({d}, {d}) (n_bs x n_prb; got {np.shape(self.prior_cov[0]) if self.prior_cov else ()}); "
                         "build it with transformer.prior_cov_field.")
    if self.anchor == "mixture":
      d = self.n_bs * self.n_prb
      comps = self.prior_mix[1] if len(self.prior_mix) == 2 else ()
      if (self.n_occ != 1 or not comps or len(self.prior_mix[0]) != len(comps)
          or any(np.shape(c[0]) != (d, d) for c in comps)):
        raise ValueError(f"anchor='mixture' needs one SRS occasion (n_occ={self.n_occ}) and prior_mix=(log_weights, "
                         f"components) with one ({d}, {d}) row covariance (n_bs x n_prb) per weight; build it with "
                         "transformer.prior_mix_field.")
      if self.use == "e2e":
        raise ValueError("anchor='mixture' anchors use='sl' or 'dm'; for the E2E model use anchor 'prior' or 'none'.")
    if self.anchor != "none" and self.use == "dm" and len(self.dm_schedule) != 3:
      raise ValueError(f"anchor={self.anchor!r} with use='dm' needs dm_schedule=(T, cosine_s, max_beta); got "
                       f"{self.dm_schedule!r}.")
    init = nn.initializers.normal(0.02)
    self.obs_embed = nn.Dense(self.d_model)
    self.snr_embed = nn.Dense(self.d_model)
    self.latest_embed = nn.Dense(self.d_model)
    if self.use != "dm":
      self.skip_gain = self.param("skip_gain", nn.initializers.zeros, (self.n_occ, 2))
    self.enc_pos = self.param("enc_pos", init, (self.n_occ, self.n_ue // self.ue_per_token, self.n_prb,
                                                self.d_model))
    self.null_embed = self.param("null_embed", init, (self.d_model,))
    self.encoder = [_Block(self.d_model, self.num_heads, self.mlp_ratio, self.dropout, cross=False)
                    for _ in range(self.enc_layers)]
    self.enc_norm = nn.LayerNorm()
    self.dec_pos = self.param("dec_pos", init, (self.n_ue // self.ue_per_token, self.n_prb, self.d_model))
    if self.use == "dm":
      self.state_embed = nn.Dense(self.d_model)
      self.t_mlp = [nn.Dense(self.d_model), nn.Dense(self.d_model)]
    self.decoder = [_Block(self.d_model, self.num_heads, self.mlp_ratio, self.dropout, cross=True)
                    for _ in range(self.dec_layers)]
    self.dec_norm = nn.LayerNorm()
    # Anchored: a zero head makes the untrained model the Gaussian predictor exactly.
    zero = dict(kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros) if self.anchor != "none" else {}
    self.head = nn.Dense(2 * self.n_bs * self.ue_per_token, **zero)

  def encode(self, obs: jax.Array, mask: jax.Array, noise_var: jax.Array, drop: jax.Array | None = None, *,
             train: bool = False) -> dict:
    """Encode an SRS history once; every decoder call (all reverse steps) reuses the result.

    Args:
      obs: ``[B, n_occ, n_ue, n_bs, n_prb]`` complex, 0 where not sounded.
      mask: ``[B, n_occ, n_prb]`` bool, exactly ``n_prb / num_hops`` True per occasion.
      noise_var: ``[B]`` per-element noise variance of the LS estimates (``10^(-SNR/10)``).
      drop: optional ``[B]`` bool; True replaces the sample's tokens by the null embedding.

    Returns:
      ``{"memory": [B, n_occ * n_ue/g * n_prb/num_hops, d_model], "query": [B, n_ue/g, n_prb, d_model],
      "skip": [B, n_ue, n_bs, n_prb]}``: the encoder memory, the per-cell query term of the latest
      observation and the latest-observation output path (zero for ``dm``); anchored, ``skip`` includes
      the Gaussian predictor's term (``sl``, ``e2e``) and ``"gauss"`` holds the conditional Gaussian
      (``dm``; the null prior ``CN(0, I)`` for dropped samples).
    """
    B = obs.shape[0]
    s = self.n_prb // self.num_hops
    noise_var = jnp.broadcast_to(jnp.asarray(noise_var, jnp.float32), (B,))
    # Unit-power tokens: y / sqrt(1 + noise_var) for a unit-power channel.
    unit = jax.lax.rsqrt(1.0 + noise_var).astype(obs.dtype)
    snr_feat = jnp.stack([jnp.log10(noise_var), 1.0 / (1.0 + noise_var)], axis=-1)      # [B, 2]
    snr_emb = self.snr_embed(snr_feat)                                                    # [B, d]
    # PRB indices of the sounded cells, in increasing order (stable sort puts True first).
    idx = jnp.argsort(~mask, axis=-1, stable=True)[..., :s]                          # [B, n_occ, s]
    cells = jnp.take_along_axis(obs, idx[:, :, None, None, :], axis=-1)              # [B, n_occ, n_ue, n_bs, s]
    cells = cells * unit[:, None, None, None, None]
    x = self.obs_embed(to_tokens(jnp.moveaxis(cells, 3, 4), self.ue_per_token))                       # [B, n_occ, n_ue/g, s, d]
    x = x + snr_emb[:, None, None, None, :]
    latest, occ, seen = srs.latest_observation(obs, mask)
    keep = seen if drop is None else seen & ~drop[:, None]                                # [B, n_prb]
    latest = jnp.where(keep[:, None, None, :], latest, 0)
    query = self.latest_embed(to_tokens(jnp.moveaxis(latest * unit[:, None, None, None], -2, -1),
                                        self.ue_per_token))                               # [B, n_ue/g, n_prb, d]
    query = query + jnp.where(keep[:, None, :, None], snr_emb[:, None, None, :], 0.0)
    if self.use == "dm":
      skip = jnp.zeros_like(latest)
    else:
      g = jax.lax.complex(self.skip_gain[:, 0], self.skip_gain[:, 1])[occ]                # [B, n_prb]
      shrink = (1.0 / (1.0 + noise_var)).astype(obs.dtype)
      skip = (g * shrink[:, None])[:, None, None, :] * latest
    extra = {}
    if self.anchor != "none":
      keep = jnp.ones((B,), bool) if drop is None else ~drop
      gp = self._gaussian(obs, mask, noise_var, keep)
      if self.anchor == "mixture":
        if self.use == "sl":
          skip = skip + gaussian_predictor.mixture_mean(gp)
        else:
          comps = gp.components._replace(cov_vals=gp.components.cov_vals + self.cov_floor)
          # Batch-major like every encoder output (the samplers repeat them along axis 0).
          extra["mix"] = {"components": jax.tree.map(lambda v: jnp.moveaxis(v, 0, 1), comps._asdict()),
                          "log_resp": gp.log_resp}
      elif self.use == "sl":
        skip = skip + gp.mean
      elif self.use == "e2e":
        skip = skip + gaussian_predictor.latent(gp, self.n_ue)
      else:
        gp = gp._replace(cov_vals=gp.cov_vals + self.cov_floor)
        if self.anchor == "gaussian":
          gp = gaussian_predictor.unconditional(gp, keep)
        extra["gauss"] = gp._asdict()
    if drop is not None:
      x = jnp.where(drop[:, None, None, None, None], self.null_embed, x)
    n_tok_ue = self.n_ue // self.ue_per_token
    pos = self.enc_pos[jnp.arange(self.n_occ)[None, :, None, None], jnp.arange(n_tok_ue)[None, None, :, None],
                       idx[:, :, None, :]]                                            # [B, n_occ, n_ue/g, s, d]
    x = (x + pos).reshape(B, -1, self.d_model)
    for blk in self.encoder:
      x = blk(x, train=train)
    return {"memory": self.enc_norm(x), "query": query, "skip": skip, **extra}

  def _gaussian(self, obs, mask, noise_var, keep):
    """The anchor's conditional law (a function of the data only: no gradient flows into it). ``"prior"`` and
    ``"mixture"``: samples with ``keep = False`` (classifier-free guidance's null condition) see nothing, so they
    get the prior itself; ``"gaussian"`` replaces them afterwards (:func:`jaxchan.gaussian_predictor.unconditional`)."""
    if self.anchor == "prior":
      latest, _, seen = srs.latest_observation(obs, mask)
      gp = gaussian_predictor.under_prior(latest, seen & keep[:, None], noise_var, _complex(self.prior_cov))
    elif self.anchor == "mixture":
      latest, _, seen = srs.latest_observation(obs, mask)
      covs = jnp.stack([_complex(c) for c in self.prior_mix[1]])
      gp = gaussian_predictor.under_mixture(latest, seen & keep[:, None], noise_var, covs,
                                            jnp.asarray(self.prior_mix[0], jnp.float32))
    else:
      rho = jnp.asarray([complex(re, im) for re, im in self.age_corr], jnp.complex64)
      o = srs.SRSObservation(obs, mask, -10.0 * jnp.log10(noise_var), noise_var)
      gp = gaussian_predictor.predict(o, rho)
    return jax.tree.map(jax.lax.stop_gradient, gp)

  def _gaussian_output(self, gauss: dict, x_t, t, *, mixture: bool = False):
    """The anchored DM's closed-form term: the ``v`` (or ``eps``) of the exact posterior mean under the
    conditional Gaussian (or mixture)."""
    T, s, max_beta = self.dm_schedule
    sch = schedules.cosine_schedule(int(T), s=float(s), max_beta=float(max_beta))
    if mixture:
      comps = jax.tree.map(lambda v: jnp.moveaxis(v, 1, 0), gauss["components"])
      pred = gaussian_predictor.MixturePrediction(gaussian_predictor.GaussianPrediction(**comps), gauss["log_resp"])
      x0 = gaussian_predictor.mixture_denoise(pred, x_t, sch.alpha_bars[t])
    else:
      x0 = gaussian_predictor.denoise(gaussian_predictor.GaussianPrediction(**gauss), x_t, sch.alpha_bars[t])
    eps = ddpm.eps_from_x0(x_t, x0, t, sch)
    return eps if self.prediction == "eps" else ddpm.v_target(x0, eps, t, sch)

  def decode(self, enc: dict, x_t: jax.Array | None = None, t: jax.Array | None = None, *,
             train: bool = False) -> jax.Array:
    """Decoder output ``[B, n_ue, n_bs, n_prb]`` complex (channel, ``eps_hat`` or latent channel).

    Args:
      enc: the output of :meth:`encode` (any batch ``B``, e.g. repeated for K samples).
      x_t: ``[B, n_ue, n_bs, n_prb]`` noisy state (``use="dm"`` only).
      t: ``[B]`` diffusion step (``use="dm"`` only).
    """
    memory = enc["memory"]
    B = memory.shape[0]
    q = jnp.broadcast_to(self.dec_pos, (B,) + self.dec_pos.shape) + enc["query"]     # [B, n_ue/g, n_prb, d]
    if self.use == "dm":
      if x_t is None or t is None:
        raise ValueError("the DM decoder needs the noisy state x_t and the step t.")
      q = q + self.state_embed(to_tokens(jnp.moveaxis(x_t, -2, -1), self.ue_per_token))
      temb = self.t_mlp[1](nn.gelu(self.t_mlp[0](sinusoidal(t, self.d_model))))
      q = q + temb[:, None, None, :]
    n_tok_ue = self.n_ue // self.ue_per_token
    x = q.reshape(B, n_tok_ue * self.n_prb, self.d_model)
    for blk in self.decoder:
      x = blk(x, memory, train=train)
    out = self.head(self.dec_norm(x)).reshape(B, n_tok_ue, self.n_prb, 2 * self.n_bs * self.ue_per_token)
    out = jnp.moveaxis(from_tokens(out, self.ue_per_token), -1, -2) + enc["skip"]   # [B, n_ue, n_bs, n_prb]
    if "gauss" in enc:
      out = out + self._gaussian_output(enc["gauss"], x_t, t)
    if "mix" in enc:
      out = out + self._gaussian_output(enc["mix"], x_t, t, mixture=True)
    return out

  def __call__(self, obs, mask, noise_var, x_t=None, t=None, drop=None, *, train: bool = False):
    return self.decode(self.encode(obs, mask, noise_var, drop, train=train), x_t, t, train=train)
