"""Training loop: checkpoint/resume reproduces an uninterrupted run; a non-finite loss stops it."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxchan import train


def _problem(lr=0.2):
  # Noisy linear regression: loss depends on the step's key, so resume must restore it.
  w_true = jnp.array([1.5, -2.0, 0.5])
  X = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
  y = X @ w_true

  def loss_fn(params, batch, key):
    Xb, yb = batch
    noise = 0.1 * jax.random.normal(key, yb.shape)
    return jnp.mean((Xb @ params["w"] - yb - noise) ** 2)

  opt = train.step_decay_adam(lr, steps_per_epoch=4, decay_every_epochs=2, decay_factor=0.5)

  def batches(epoch):
    order = np.random.default_rng([7, epoch]).permutation(64)
    for i in range(0, 64, 16):
      idx = order[i:i + 16]
      yield X[idx], y[idx]

  params = {"w": jnp.zeros(3)}
  return params, opt, loss_fn, batches


def test_resume_equals_uninterrupted(tmp_path):
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  full, hist_full = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=4,
                              workdir=str(tmp_path / "a"), progress=False, log=lambda m: None)
  # Same job stopped after 2 epochs, then the same command rerun to 4.
  fresh = lambda: train.init_state(params, opt, jax.random.PRNGKey(1))  # noqa: E731
  train.fit(fresh(), step, batches, num_epochs=2, workdir=str(tmp_path / "b"), progress=False, log=lambda m: None)
  resumed, hist_res = train.fit(fresh(), step, batches, num_epochs=4, workdir=str(tmp_path / "b"), progress=False,
                                log=lambda m: None)
  np.testing.assert_array_equal(resumed.params["w"], full.params["w"])
  assert int(resumed.step) == int(full.step) == 16
  assert [h["train_loss"] for h in hist_res] == [h["train_loss"] for h in hist_full]
  lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3, 4]
  assert hist_full[-1]["train_loss"] < 0.25 * hist_full[0]["train_loss"]  # it actually learns


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=1,
            workdir=str(tmp_path), progress=False, log=lambda m: None)

  def bad_batches(epoch):
    for Xb, yb in batches(epoch):
      yield Xb, yb * jnp.nan

  with pytest.raises(train.NonFiniteLoss, match="NaN/Inf in epoch 2"):
    train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, bad_batches, num_epochs=3,
              workdir=str(tmp_path), progress=False, log=lambda m: None)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
