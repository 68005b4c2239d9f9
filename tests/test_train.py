"""Training loop: checkpoint/resume reproduces an uninterrupted run; a non-finite loss stops it."""

import json
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import xla_flags
from jaxchan import train

QUIET = train.Report(progress=False, log=lambda m: None)


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
                              workdir=str(tmp_path / "a"), report=QUIET)
  # Same job stopped after 2 epochs, then the same command rerun to 4.
  fresh = lambda: train.init_state(params, opt, jax.random.PRNGKey(1))  # noqa: E731
  train.fit(fresh(), step, batches, num_epochs=2, workdir=str(tmp_path / "b"), report=QUIET)
  resumed, hist_res = train.fit(fresh(), step, batches, num_epochs=4, workdir=str(tmp_path / "b"), report=QUIET)
  np.testing.assert_array_equal(resumed.params["w"], full.params["w"])
  assert int(resumed.step) == int(full.step) == 16
  assert [h["train_loss"] for h in hist_res] == [h["train_loss"] for h in hist_full]
  lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3, 4]
  assert hist_full[-1]["train_loss"] < 0.25 * hist_full[0]["train_loss"]  # it actually learns
  # One program for every epoch of both jobs and the resume: each hands the step a state of one signature (every
  # leaf committed to the device, the per-epoch counters included), so nothing is compiled twice.
  assert step._cache_size() == 1


def test_select_keeps_the_best_held_out_parameters_and_survives_resume(tmp_path):
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  X = jax.random.normal(jax.random.PRNGKey(5), (32, 3))
  # Held-out targets from other weights: training first approaches them (w moves from 0 towards w_true, and
  # w_held lies on that path) and then passes them, so the held-out loss has an interior minimum.
  w_held = 0.4 * jnp.array([1.5, -2.0, 0.5])
  held = lambda p: {"val": jnp.mean((X @ p["w"] - X @ w_held) ** 2)}  # noqa: E731
  full, hist = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=6,
                         workdir=str(tmp_path / "a"), report=QUIET, evaluate=train.Evaluation(held, "val"))
  vals = [float(held(params)["val"])] + [h["val"] for h in hist]
  best = int(np.argmin(vals))
  assert 0 < best < 6, vals       # the problem is built so the minimum is neither the start nor the end
  assert int(full.best_epoch) == best and hist[-1]["kept_epoch"] == best
  assert float(full.best_loss) == pytest.approx(vals[best], rel=1e-6)
  assert float(held(full.best_params)["val"]) == pytest.approx(vals[best], rel=1e-6)
  assert not np.allclose(full.best_params["w"], full.params["w"])
  # Stopped after the best epoch and resumed: the kept parameters come back from the checkpoint.
  fresh = lambda: train.init_state(params, opt, jax.random.PRNGKey(1))  # noqa: E731
  sel = train.Evaluation(held, "val")
  train.fit(fresh(), step, batches, num_epochs=best + 1, workdir=str(tmp_path / "b"), report=QUIET, evaluate=sel)
  resumed, _ = train.fit(fresh(), step, batches, num_epochs=6, workdir=str(tmp_path / "b"), report=QUIET, evaluate=sel)
  np.testing.assert_array_equal(resumed.best_params["w"], full.best_params["w"])
  assert int(resumed.best_epoch) == best


def test_select_keeps_the_initial_parameters_when_training_only_hurts_held_out_loss(tmp_path):
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  # Held-out targets are the initial model's own outputs (w = 0): every step away from 0 is worse on them.
  held = lambda p: {"val": jnp.mean(p["w"] ** 2)}  # noqa: E731
  state, hist = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=2,
                          workdir=str(tmp_path), report=QUIET, evaluate=train.Evaluation(held, "val"))
  assert int(state.best_epoch) == 0 and [h["kept_epoch"] for h in hist] == [0, 0]
  np.testing.assert_array_equal(state.best_params["w"], params["w"])


def test_without_select_the_kept_parameters_are_the_last_epochs(tmp_path):
  params, opt, loss_fn, batches = _problem()
  state, _ = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), train.make_train_step(loss_fn, opt),
                       batches, num_epochs=2, workdir=str(tmp_path), report=QUIET)
  np.testing.assert_array_equal(state.best_params["w"], state.params["w"])
  assert int(state.best_epoch) == 2


def test_a_checkpoint_written_before_kept_parameters_resumes(tmp_path):
  import orbax.checkpoint as ocp
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  full, _ = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=3,
                      workdir=str(tmp_path / "a"), report=QUIET)
  # The same run's epoch-2 state saved in the layout older versions wrote (no best_* fields), then resumed.
  two, _ = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=2,
                     workdir=str(tmp_path / "b"), report=QUIET)
  legacy = train._LegacyState(**{f: getattr(two, f) for f in train._LegacyState.__dataclass_fields__})
  mgr = ocp.CheckpointManager(str(tmp_path / "c" / "checkpoints"), options=ocp.CheckpointManagerOptions(create=True))
  mgr.save(int(two.step), args=ocp.args.StandardSave(legacy), force=True)
  mgr.wait_until_finished()
  mgr.close()
  resumed, _ = train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=3,
                         workdir=str(tmp_path / "c"), report=QUIET)
  np.testing.assert_array_equal(resumed.params["w"], full.params["w"])
  np.testing.assert_array_equal(resumed.best_params["w"], full.params["w"])


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, batches, num_epochs=1,
            workdir=str(tmp_path), report=QUIET)

  def bad_batches(epoch):
    for Xb, yb in batches(epoch):
      yield Xb, yb * jnp.nan

  with pytest.raises(train.NonFiniteLoss, match="NaN/Inf in epoch 2"):
    train.fit(train.init_state(params, opt, jax.random.PRNGKey(1)), step, bad_batches, num_epochs=3,
              workdir=str(tmp_path), report=QUIET)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]  # numbered by global step: 4 steps per epoch


# ---------------------------------------------------------------------------
# Real processes: preemption by signal, data parallelism, damaged checkpoints.

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "tests", "train_job.py")


def _job(args, env_extra=None, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **(env_extra or {}))
  return [sys.executable, JOB, *args], env


def _params(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def _reference_then_interrupted(tmp_path, sig):
  """The uninterrupted job (``ref.npz``), then the same job slowed on the host so that ``sig`` lands inside epoch
  2: ``(cmd, env, proc, stdout, stderr)`` of the interrupted one (``cmd[:-2]`` reruns it without the slowdown)."""
  cmd, env = _job([str(tmp_path / "ref"), "--out", str(tmp_path / "ref.npz")])
  subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
  cmd, env = _job([str(tmp_path / "run"), "--out", str(tmp_path / "run.npz"), "--sleep", "0.05"])
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  first = proc.stdout.readline()                 # epoch 1's JSON line: now inside epoch 2
  assert '"epoch": 1' in first, first + proc.stderr.read()
  time.sleep(0.3)
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=120)
  return cmd, env, proc, out, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_mid_epoch_and_resume_matches_uninterrupted(tmp_path, sig):
  cmd, env, proc, out, err = _reference_then_interrupted(tmp_path, sig)
  assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
  m = re.search(r"checkpoint written at step (\d+) \(epoch 2, batch (\d+)\)", out)
  assert m, out + err[-2000:]
  assert 0 < int(m.group(2)) < 16              # mid-epoch, not at a boundary
  assert not os.path.exists(tmp_path / "run.npz")
  resumed = subprocess.run(cmd[:-2], env=env, capture_output=True, text=True, timeout=300)   # no --sleep
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"batch {m.group(2)} (step {m.group(1)})" in resumed.stdout
  ref, got = _params(tmp_path / "ref.npz"), _params(tmp_path / "run.npz")
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k])
  # The epoch's logged mean loss covers the batches before and after the signal.
  a = [json.loads(l) for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
  b = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-6)


def test_a_resumed_run_writes_the_scalars_a_killed_one_lost(tmp_path):
  # tensorboardX queues events for a writer thread; a SIGKILL can drop the last ones. What the event files lack of
  # the restored metrics.jsonl records is written again, and nothing twice.
  from jaxchan import summary
  history = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.4}]
  assert summary.missing(str(tmp_path), history) == history          # no event file yet
  w = summary.writer(str(tmp_path))
  summary.write_scalars(w, 1, history[0])
  w.close()
  assert summary.missing(str(tmp_path), history) == history[1:]
  # A kill can also land between one epoch's scalars (each is its own event): only the lost ones come back.
  history = [{"epoch": 1, "train_loss": 0.5, "test_loss": 0.6}, {"epoch": 2, "train_loss": 0.4, "test_loss": 0.5}]
  assert summary.missing(str(tmp_path), history) == [{"epoch": 1, "test_loss": 0.6}, history[1]]
  w = summary.writer(str(tmp_path))
  for r in summary.missing(str(tmp_path), history):
    summary.write_scalars(w, r["epoch"], r)
  w.close()
  got = summary.read_scalars(str(tmp_path))
  assert got["train_loss"] == [(1, 0.5), (2, pytest.approx(0.4))]
  assert got["test_loss"] == [(1, pytest.approx(0.6)), (2, 0.5)]
  assert summary.missing(str(tmp_path), history) == []


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_last_epoch_checkpoint_and_matches_uninterrupted(tmp_path):
  """A kill no handler sees (SIGKILL, the OOM killer, a lost node): no mid-epoch checkpoint is written, so the rerun
  starts again at the last epoch boundary and must still end with the uninterrupted run's parameters, bit for bit
  (step, data order and PRNG state all come back from the checkpoint). The experiments' jobs share this loop."""
  cmd, env, proc, out, err = _reference_then_interrupted(tmp_path, signal.SIGKILL)
  assert proc.returncode == -signal.SIGKILL and "checkpoint written" not in out
  resumed = subprocess.run(cmd[:-2], env=env, capture_output=True, text=True, timeout=300)   # no --sleep
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "at epoch 1, batch 0 (step 16)" in resumed.stdout, resumed.stdout   # the end of epoch 1: 16 batches
  ref, got = _params(tmp_path / "ref.npz"), _params(tmp_path / "run.npz")
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k])
  assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name]   # atomic writes: nothing half-written


@pytest.mark.slow
def test_four_devices_reach_the_same_parameters_as_one(tmp_path):
  flags = {"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4")}
  for n in (1, 4):
    cmd, env = _job([str(tmp_path / f"d{n}"), "--epochs", "2", "--devices", str(n), "--out",
                     str(tmp_path / f"d{n}.npz")], flags)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "devices 4" in proc.stdout
  one, four = _params(tmp_path / "d1.npz"), _params(tmp_path / "d4.npz")
  for k in one:
    # Same arithmetic, but the gradient mean is reduced in a different order over the 4 shards:
    # float32 reassociation over 32 Adam steps stays far below 1e-4 relative.
    np.testing.assert_allclose(four[k], one[k], rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(one[k])) > 0.05                                  # the parameters did move


def test_batch_not_divisible_by_devices_is_refused():
  from jaxchan import parallel
  m = parallel.mesh(jax.devices()[:1])
  parallel.check_batch(7, m)     # one device takes anything
  with pytest.raises(ValueError, match="not divisible by the 3 devices"):
    parallel.check_batch(16, type("M", (), {"devices": np.zeros(3)})())


def test_corrupted_checkpoint_is_detected_at_start(tmp_path):
  params, opt, loss_fn, batches = _problem()
  step = train.make_train_step(loss_fn, opt)
  fresh = lambda: train.init_state(params, opt, jax.random.PRNGKey(1))  # noqa: E731
  train.fit(fresh(), step, batches, num_epochs=2, workdir=str(tmp_path), report=QUIET)
  latest = tmp_path / "checkpoints" / "8"
  files = [p for p in latest.rglob("*") if p.is_file() and p.stat().st_size > 0]
  biggest = max(files, key=lambda p: p.stat().st_size)
  biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 3])   # truncated, as by a full disk
  with pytest.raises(train.CheckpointError, match=r"cannot be restored .*Delete that folder"):
    train.fit(fresh(), step, batches, num_epochs=3, workdir=str(tmp_path), report=QUIET)


@pytest.mark.slow
def test_two_processes_with_jax_distributed_match_one_device(tmp_path):
  """Multi-host on one machine: 2 processes x 2 CPU devices over gloo, as on 2 hosts (run.py's --coordinator)."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  flags = {"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=2")}
  procs = []
  for i in range(2):
    cmd, env = _job([str(tmp_path / "mh"), "--epochs", "2", "--devices", "-1", "--out", str(tmp_path / "mh.npz"),
                     "--coordinator", f"localhost:{port}", "--num_processes", "2", "--process_id", str(i)], flags)
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
    assert "devices 4 processes 2" in out
  cmd, env = _job([str(tmp_path / "one"), "--epochs", "2", "--out", str(tmp_path / "one.npz")])
  subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
  one, multi = _params(tmp_path / "one.npz"), _params(tmp_path / "mh.npz")
  for k in one:
    np.testing.assert_allclose(multi[k], one[k], rtol=1e-4, atol=1e-5)   # as in the 4-device test


@pytest.mark.slow   # two processes under jax.distributed (~5 s each case)
@pytest.mark.parametrize("shared", [True, False])
def test_multi_process_dataset_is_built_once_by_process_zero(tmp_path, shared):
  """Process 0 builds a missing dataset, the others wait; without a shared filesystem they say how to fix it."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  markers = tmp_path / "markers"
  markers.mkdir()
  procs = []
  for i in range(2):
    # Separate folders per process stand in for hosts that do not share a filesystem.
    path = tmp_path / ("shared" if shared else f"host{i}") / "ds.h5"
    cmd = [sys.executable, os.path.join(ROOT, "tests", "dataset_job.py"), str(path), str(markers),
           "--coordinator", f"localhost:{port}", "--num_processes", "2", "--process_id", str(i)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  assert [m.name for m in markers.iterdir()] == ["built_by_0"]
  last = [out.strip().splitlines()[-1] for out, _ in outs]  # gloo prints its own lines first
  assert last[0].startswith("ok ")
  if shared:
    assert last[1].startswith("ok ")
  else:
    assert "do not share a filesystem" in last[1] and "python -m datagen.uma" in last[1]
