"""The HDF5 reader and datagen.from_numpy, on small synthetic arrays (no Sionna needed)."""

import numpy as np
import pytest

from datagen import from_numpy
from jaxchan import data


@pytest.fixture
def npy_dataset(tmp_path):
  rng = np.random.default_rng(0)
  arr = (rng.normal(size=(100, 1, 8, 16)) + 1j * rng.normal(size=(100, 1, 8, 16))).astype(np.complex64)
  arr *= np.arange(1, 101).reshape(100, 1, 1, 1)  # different power per sample, to see normalization
  src = tmp_path / "deepmimo.npy"
  np.save(src, arr)
  out = tmp_path / "ds.h5"
  from_numpy.convert(str(src), str(out), num_test=20, seed=3)
  return arr[:, 0], str(out)


def test_from_numpy_normalizes_and_splits(npy_dataset):
  arr, path = npy_dataset
  with data.Dataset(path, kind="snapshot", shapes={"h": (8, 16)}) as ds:
    assert ds.size("train") == 80 and ds.size("test") == 20
    tr, te = ds.load("train")["h"], ds.load("test")["h"]
    np.testing.assert_allclose(np.mean(np.abs(tr) ** 2, axis=(1, 2)), 1.0, rtol=1e-5)
    # Every source sample appears exactly once, up to its normalization.
    src = arr / np.sqrt(np.mean(np.abs(arr) ** 2, axis=(1, 2), keepdims=True))
    got = np.concatenate([tr, te])
    key = lambda x: np.round(np.abs(x[:, 0, 0]), 4)  # noqa: E731
    assert sorted(key(got)) == sorted(key(src))


@pytest.mark.parametrize("in_memory", [True, False])
def test_batches_are_shuffled_deterministic_and_complete(npy_dataset, in_memory):
  _, path = npy_dataset
  with data.Dataset(path, in_memory=in_memory, block_size=8, shuffle_blocks=2) as ds:
    run = lambda seed, epoch: [b["h"] for b in ds.batches("train", 16, seed=seed, epoch=epoch,  # noqa: E731
                                                          drop_remainder=False)]
    a, b, c = run(0, 0), run(0, 0), run(0, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))          # same (seed, epoch): same order
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))  # next epoch: new order
    full = ds.load("train")["h"]
    got = np.concatenate(a)
    assert got.shape == full.shape
    assert sorted(map(bytes, got)) == sorted(map(bytes, full))      # each sample exactly once
    assert not np.array_equal(got, full)                              # and shuffled
  with data.Dataset(path) as ds, pytest.raises(ValueError, match="batch_size=500"):
    next(ds.batches("train", 500))


@pytest.mark.parametrize("in_memory", [True, False])
def test_batches_with_stop_use_exactly_the_first_samples(npy_dataset, in_memory):
  # A held-out tail (training's validation samples) must never reach a training batch, in either reader.
  _, path = npy_dataset
  with data.Dataset(path, in_memory=in_memory, block_size=8, shuffle_blocks=2) as ds:
    got = np.concatenate([b["h"] for b in ds.batches("train", 10, seed=0, epoch=0, drop_remainder=False, stop=67)])
    full = ds.load("train")["h"]
    assert sorted(map(bytes, got)) == sorted(map(bytes, full[:67]))
    with pytest.raises(ValueError, match="stop=81 must be between 1 and the train size 80"):
      next(ds.batches("train", 10, stop=81))


def test_read_gives_the_same_samples_loaded_or_from_the_file(npy_dataset):
  _, path = npy_dataset
  with data.Dataset(path) as ds:
    direct = ds.read("train", 70, 80)["h"]
    np.testing.assert_array_equal(direct, ds.load("train")["h"][70:80])
    np.testing.assert_array_equal(ds.read("train", 70, 80)["h"], direct)     # now from the loaded split


def test_held_out_tail_is_scored_in_chunks_and_a_resume_with_another_split_is_refused(npy_dataset, tmp_path):
  import jax
  import jax.numpy as jnp
  import ml_collections

  from jaxchan import train
  from jaxchan.experiments import common
  _, path = npy_dataset
  # A deterministic loss (the key unused): the held-out loss, scored in chunks of test_loss_samples = 8 (8 + 8 + 4),
  # must equal the loss on the whole 20-sample tail, and the kept parameters must be the epoch with the lowest.
  loss_fn = lambda p, h, key: jnp.mean(jnp.abs(p["w"] * h - 0.5 * h) ** 2)  # noqa: E731
  tcfg = ml_collections.ConfigDict(dict(batch_size=16, lr=0.05, decay_every_epochs=0, decay_factor=0.5,
                                        test_loss_samples=8, val_samples=20))
  job = common.TrainJob("toy", {"w": jnp.zeros(())}, loss_fn, lambda a, n: jnp.asarray(a["h"][:n]),
                        str(tmp_path / "m"), {})
  quiet = train.Report(progress=False, log=lambda m: None)
  with data.Dataset(path) as ds:
    params, hist = common.train_model(job, ds, tcfg, num_epochs=2, key=jax.random.PRNGKey(0), seed=0, report=quiet)
    tail = jnp.asarray(ds.load("train")["h"][60:])
    initial = float(loss_fn({"w": jnp.zeros(())}, tail, None))
    val = [initial] + [h["val_loss"] for h in hist]
    np.testing.assert_allclose(float(loss_fn(params, tail, None)), min(val), rtol=1e-5)
    assert hist[-1]["kept_epoch"] == int(np.argmin(val))
    tcfg.val_samples = 8
    with pytest.raises(ValueError, match="trained with config.train.val_samples=20; this run asks for 8"):
      common.train_model(job, ds, tcfg, num_epochs=3, key=jax.random.PRNGKey(0), seed=0, report=quiet)


def test_a_trained_models_test_channels_load_only_at_its_shape(npy_dataset, tmp_path):
  # The loader the non-identical benchmarks and studies share: the first num test channels, and a dataset of other
  # channels refused with the fix before any model runs; a missing file refused by the reader, naming the path.
  from jaxchan.experiments import noniden_setup
  arr, path = npy_dataset
  h = noniden_setup.load_test_channels({"shape": [8, 16]}, path, 5)
  assert h.shape == (5, 8, 16)
  with data.Dataset(path, kind="snapshot") as ds:
    np.testing.assert_array_equal(h, ds.load("test")["h"][:5])
  with pytest.raises(ValueError, match=r"holds channels \(8, 16\) but the model was trained on \(32, 64\); pass"):
    noniden_setup.load_test_channels({"shape": [32, 64]}, path, 5)
  with pytest.raises(data.DatasetError, match="missing.h5"):
    noniden_setup.load_test_channels({"shape": [8, 16]}, str(tmp_path / "missing.h5"))
