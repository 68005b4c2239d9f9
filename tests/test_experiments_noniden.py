"""The non-identical experiment (jaxchan.experiments.noniden and its _eval / _report modules): the :smoke job end
to end, config validation, tables and figures from results.json."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (ROOT, assert_stops_before_work, assert_validate_refuses, config_with, docs_block,
                      run_killed_then_resumed)


@pytest.mark.slow
def test_noniden_smoke_end_to_end_and_resume(tmp_path, tiny_datasets, caplog):
  cfg = os.path.join(ROOT, "configs", "noniden.py")
  data_path = tiny_datasets["simo_ofdm"]      # the :smoke dataset (simo_ofdm, tiny, seed 0), built once per session
  args = [f"--config={cfg}:smoke", f"--workdir={tmp_path}/wd", f"--config.data.path={data_path}",
          "--config.progress=False"]
  # The job SIGKILLed after the first model's first epoch, then rerun to the end: that model resumed, the second
  # trained, and the results below are the rerun's (conftest.run_killed_then_resumed). That a finished model is
  # kept is the in-process rerun's check below.
  run_killed_then_resumed(args, tmp_path, tmp_path / "wd", "models", {"identical": 2, "nonid": 2},
                          'identical (1/2): {"epoch": 1')
  res = json.load(open(tmp_path / "wd" / "results.json"))
  assert "models/identical/checkpoints at epoch 1, batch 0" in (tmp_path / "wd" / "jaxchan.log").read_text()
  assert set(res["training"]) == {"nonid", "identical"}
  rows = res["generation"]["rows"]
  # 2 patterns x (nonid: 2 steppings + 1 extra sampler + the paper start with both samplers; identical: 1 run).
  assert len(rows) == 2 * (5 + 1)
  assert {r["start"] for r in rows} == {"consistent", "paper", "identical"}
  assert all(len(r["nmse_per_step"]) == 5 and np.isfinite(r["final_nmse"]) for r in rows)
  assert (tmp_path / "wd" / "fig_steps.png").stat().st_size > 1000
  assert "raw start" in (tmp_path / "wd" / "tables.md").read_text()
  # Logs: jaxchan's lines (each model named with its index) in WORKDIR/jaxchan.log, orbax's INFO chatter not.
  log_text = (tmp_path / "wd" / "jaxchan.log").read_text()
  assert "identical (1/2): {\"epoch\": 2" in log_text and "nonid (2/2): {\"epoch\": 1" in log_text
  assert "results written to" in log_text and "orbax" not in log_text.lower()
  # TensorBoard scalars: one train and test loss per epoch per model, equal to metrics.jsonl's.
  from jaxchan import summary
  for name in ("nonid", "identical"):
    tb = summary.read_scalars(str(tmp_path / "wd" / "models" / name))
    records = [json.loads(line) for line in open(tmp_path / "wd" / "models" / name / "metrics.jsonl")]
    for tag in ("train_loss", "test_loss"):
      assert [s for s, _ in tb[tag]] == [r["epoch"] for r in records]
      assert [v for _, v in tb[tag]] == pytest.approx([r[tag] for r in records], rel=1e-6)   # float32 in the file
  # Outputs are readable by the group and others (0644 under the usual umask 022): a shared workdir works.
  for f in ("results.json", "tables.md", "fig_steps.png", "jaxchan.log", "models/nonid/metrics.jsonl"):
    assert os.stat(tmp_path / "wd" / f).st_mode & 0o044 == 0o044, f
  # A trained model loads back and generates from a user's own (H_bar, M): the load_trained block of
  # docs/noniden.md, as written, on this run's model.
  m = jnp.zeros((3, 32, 64)).at[:, ::2, ::4].set(3.0)
  code = docs_block("docs/noniden.md", "test_noniden_smoke_end_to_end_and_resume")
  ns = dict(H_bar=m * jnp.ones((3, 32, 64), jnp.complex64), M=m)
  code = code.replace("num_steps=50", "num_steps=4")   # the block as written, with 4 steps to save test time
  exec(compile(code.replace("workdir/noniden_quick/models/nonid", str(tmp_path / "wd" / "models" / "nonid")),
               "docs/noniden.md", "exec"), ns)
  assert ns["den"].anchor == "kronecker"     # the model carries the anchor it was trained with
  for k in ("H_hat", "D0"):
    assert ns[k].shape == (3, 32, 64) and bool(jnp.all(jnp.isfinite(ns[k].real))), k
  # The tables and figures re-render from results.json alone.
  from jaxchan.experiments import noniden as exp
  from jaxchan.experiments import report
  (tmp_path / "wd" / "tables.md").unlink()
  assert report.main(["report", str(tmp_path / "wd")]) == 0
  assert "raw start" in (tmp_path / "wd" / "tables.md").read_text()
  # Rerunning resumes from the checkpoints: no epoch is trained again (in-process, the command line is tested
  # above; the rerun skips the generation study, whose cost is not what this checks).
  caplog.set_level("INFO", logger="absl")   # the jobs log through absl (jaxchan.experiments.common.log)
  caplog.clear()
  overrides = {"data.path": data_path, "progress": False, "eval.models": (), "eval.lmmse": False}
  exp.run(config_with("noniden:smoke", overrides), str(tmp_path / "wd"))
  out = caplog.text
  assert out.count("resumed from") == 2 and '"epoch":' not in out     # no epoch record: nothing trained
  # A dataset whose shape does not match the config stops the job before any training.
  from jaxchan.data import DatasetError
  with pytest.raises(DatasetError, match=r"(?s)per-sample shape \(32, 64\).*expects \(16, 64\)"):
    exp.run(config_with("noniden:smoke", {"data.path": data_path, "data.n_bs": 16}), str(tmp_path / "wd2"))
  assert not os.path.exists(tmp_path / "wd2" / "models")


@pytest.mark.parametrize("overrides, match", [
    ({"models.nonid.tau_pattern": "diagonal"}, "config.models.nonid.tau_pattern='diagonal' is not supported"),
    ({"models.nonid.placement": "diag"}, "config.models.nonid.placement='diag' is not supported"),
    ({"eval.steppings": ("tau-zigzag",)}, "config.eval.steppings: stepping 'tau-zigzag' must be DOMAIN-RULE"),
    ({"eval.samplers": ("eq9:1.5",)},
     "config.eval.samplers: sampler spec 'eq9:1.5' must be 'eta:ETA', 'eq9:EPS', 'dpm2m:ETA' or 'eta+cov:ETA'"),
    ({"eval.samplers": ("eta:1.2",)}, "'dpm2m:ETA' or 'eta+cov:ETA' with a value in [0, 1]"),
    ({"eval.samplers": ("eta:1.0", "eta+cov:1.0"), "models.nonid.anchor": "none"},
     "config.eval.samplers (with config.models.nonid): sampler eta+cov:1 draws the clean estimate from the Gaussian "
     "anchor's posterior, which needs a single-Gaussian anchor (kronecker or lowrank); this denoiser's is 'none'"),
    ({"eval.start": "eq15"}, "config.eval.start='eq15' is not supported"),
    ({"train.tau_min": 0, "min_beta": 0.001}, "training times include tau = 0 (tau_min=0)"),
    ({"eval.num_steps": -3}, "config.eval.num_steps must be a positive integer; got -3"),
    ({"eval.patterns": ("pink",)}, "config.eval.patterns entry='pink' is not supported"),
    ({"beta_max": 0.99}, "config.T / config.beta_max: GammaSchedule: T=100 with beta_max=0.99"),
    ({"beta_max": -0.2}, "config.T / config.beta_max: GammaSchedule: beta_max must lie in (0, 1)"),
    ({"T": 0}, "config.T / config.beta_max: GammaSchedule: T must be a positive"),
    ({"eval.main_model": "nope"}, "config.eval.main_model: 'nope' names no model"),
    ({"models.nonid.embed_dim": 0}, "config.models.nonid"),
    ({"eval.steppings": ()}, "config.eval.steppings is empty"),
    ({"eval.samplers": ()}, "config.eval.samplers is empty"),
    ({"models.nonid.anchor": "mixture", "anchor.components": 0}, "config.anchor: components must be a positive"),
    ({"models.nonid.anchor": "mixture", "anchor.rounds": -1}, "config.anchor: rounds=-1 must be an integer >= 0"),
    ({"models.nonid.anchor": "mixture", "anchor.components": 400, "anchor.train_samples": 1000},
     "config.anchor: components=400 with rank=64 need more than rank channels each"),
    ({"models.nonid.anchor": "gmm"}, "config.models.nonid.anchor='gmm' is not supported"),
])
def test_noniden_bad_config_is_refused_by_validate(overrides, match):
  from jaxchan.experiments import noniden as exp
  assert_validate_refuses(exp, config_with("noniden:smoke", overrides), match)


@pytest.mark.slow
def test_mixture_anchored_config_validates_and_its_prior_fits_the_job_dataset(tiny_datasets):
  # The :raytraced anchor on the :smoke network: validation traces the mixture denoiser's loss and generation, and
  # fit_prior builds the mixture the job trains with from the dataset's training channels.
  from jaxchan import data
  from jaxchan.experiments import noniden as exp
  config = config_with("noniden:smoke", {"models.nonid.anchor": "mixture", "anchor.components": 2,
                                         "anchor.rank": 4, "anchor.rounds": 1, "data.path": tiny_datasets["simo_ofdm"]})
  exp.validate(config)
  with data.Dataset(tiny_datasets["simo_ofdm"], kind="snapshot") as ds:
    prior = exp.fit_prior(config, ds, "mixture", log=lambda s: None)
  assert prior.kind == "mixture" and prior.vecs.shape == (2, 32 * 64, 4)


def test_noniden_bad_config_stops_run_py_before_work(tmp_path):
  # The wiring: run.py validates first and prints one line, before any dataset or model.
  assert_stops_before_work(os.path.join(ROOT, "configs", "noniden.py") + ":smoke", "--config.beta_max=0.99",
                           "config error: config.T / config.beta_max", tmp_path, made="models")


def test_noniden_config_snrs_are_the_library_defaults():
  import configs
  from jaxchan.noise_patterns import DEFAULT_SNR_DB
  assert dict(configs.get("noniden").eval.snr_db) == DEFAULT_SNR_DB


def test_table1_pivots_training_losses():
  import configs
  from jaxchan.experiments import noniden_report as exp

  config = configs.get("noniden:smoke,table1")
  assert len(config.models) == 48
  training = {}
  for i, (name, m) in enumerate(config.models.items()):
    hist = [{"epoch": e, "train_loss": 0.1 * i + 0.01 * e} for e in (1, 2, 3)]
    training[name] = (m.to_dict(), hist)
  config.eval.table1_last_epochs = 2
  md = exp.table1({"training": training}, config)
  lines = [l for l in md.splitlines() if l.startswith("| ")]
  assert len(lines) == 1 + 6  # header + 3 placements x 2 averagings
  assert lines[0].count("|") == 2 + 8 + 1  # 2 label columns + 4 patterns x 2 inputs
  # Mean of epochs 2-3 of run i is 0.1 i + 0.025, std 0.005.
  i = list(config.models).index("t1_col_alpha_power_periodical")
  cell = f"{0.1 * i + 0.025:.3f} ± 0.005"
  row = [l for l in lines if l.startswith("| col | alpha |")][0]
  assert cell in row


def _embedding_results():
  """A ``:smoke,embeddings`` config and a results dict shaped like the experiment's (made-up numbers)."""
  import configs

  config = configs.get("noniden:smoke,embeddings")
  training = {n: (m.to_dict(), [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0}]) for n, m in config.models.items()}
  rows = [dict(model=n, pattern=p, stepping=config.eval.steppings[0], sampler=config.eval.samplers[0],
               final_nmse=0.1 * i + 0.01 * j, nmse_per_step=[1.0] * config.eval.num_steps)
          for i, n in enumerate(config.models) for j, p in enumerate(config.eval.patterns)]
  results = dict(config=config.to_dict(), training=training, dataset="x.h5", device="cpu",
                 generation=dict(num_test=4, raw_start_nmse={p: 1.0 for p in config.eval.patterns},
                                 lmmse_nmse={}, one_shot_nmse={}, rows=rows))
  return config, results


def test_embedding_figure_from_results(tmp_path):
  from jaxchan.experiments import noniden_report as exp

  config, results = _embedding_results()
  names = exp.embedding_models(results, config)
  assert set(names) == {"nonid", "emb_row", "emb_both", "emb_col_tau"}
  assert exp.plot_embeddings(results, config, str(tmp_path / "fig.png"))
  assert (tmp_path / "fig.png").stat().st_size > 1000
  md = exp.tables(results, config)
  assert "Embedding schemes" in md and "row / alpha avg" in md


def test_only_process_zero_writes_the_outputs(tmp_path, monkeypatch):
  from jaxchan.experiments import common, noniden_report

  config, results = _embedding_results()
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert not common.write_results(str(tmp_path), results, noniden_report.render)
  assert list(tmp_path.iterdir()) == []
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  assert common.write_results(str(tmp_path), results, noniden_report.render)
  assert {p.name for p in tmp_path.iterdir()} == {"results.json", "tables.md", "fig_steps.png", "fig_steps.pdf",
                                                "fig_embeddings.png", "fig_embeddings.pdf",
                                                "fig_learning_curves.png", "fig_learning_curves.pdf"}
  # results.json records what it was computed with.
  prov = __import__("json").load(open(tmp_path / "results.json"))["provenance"]
  assert prov["versions"]["jax"] == jax.__version__ and prov["devices"] and prov["host"]


@pytest.mark.parametrize("run", ["noniden_quick", "noniden_quick_anchored"])
def test_committed_results_re_render_to_their_tables(tmp_path, run):
  # Tables are pure functions of results.json: re-rendering a committed :quick run gives its tables.md byte for
  # byte (model order included, although results.json stores keys sorted); the anchored run has the paired
  # bound columns, the literal one has none.
  import shutil
  from jaxchan.experiments import report
  src = os.path.join(ROOT, "docs", "results", run)
  shutil.copy(os.path.join(src, "results.json"), tmp_path / "results.json")
  assert report.render(str(tmp_path)) == "noniden"
  assert (tmp_path / "tables.md").read_text() == open(os.path.join(src, "tables.md")).read()


def test_claims_table_reads_the_committed_low_rank_run():
  # examples/noniden_claims.py on a committed results.json: the values docs/noniden.md states for that run.
  import importlib.util
  spec = importlib.util.spec_from_file_location("noniden_claims", os.path.join(ROOT, "examples", "noniden_claims.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  md = mod.claims(json.load(open(os.path.join(ROOT, "docs", "results", "noniden_quick_raytraced_anchored",
                                              "results.json"))))
  lines = md.splitlines()
  assert lines[2] == ("| non-identical `nonid` (tau water-filling) | 0.1256 | 0.03371 | 0.06128 | 0.04033 | 0.02392 "
                      "| 0.02025 |")
  assert lines[3].startswith("| identical diffusion (its own exact start) | 0.1259 | 0.0619 | 0.6956 |")
  assert "| best training pattern (Table III) | car_only 0.1165 | all 0.03366 |" in md
  assert "- pilot_car: all 0.0202, non_directional 0.0202" in md
