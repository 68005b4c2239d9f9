"""The SRS prior experiment (jaxchan.experiments.noniden_srs) end to end on the tiny dataset: every row of the
perception table and the prior's, the unseen configurations, tables from results.json alone."""

import json
import os

import numpy as np
import pytest
from conftest import config_with


@pytest.mark.slow
def test_noniden_srs_smoke_end_to_end(tmp_path, tiny_datasets):
  from jaxchan.experiments import noniden_srs, noniden_srs_report
  c = config_with("noniden_srs:smoke", {"data.path": tiny_datasets["high_mobility"], "progress": False,
                                        "model.num_layers": 1, "model.embed_dim": 8, "train.num_epochs": 1,
                                        "eval.speeds": (1.0,), "eval.built_data.data_dir": str(tmp_path / "data"),
                                        "eval.unseen": ("hops:2", "occasions:6")})
  res = noniden_srs.run(c, str(tmp_path))
  sc = res["scenarios"]["high_mobility"]
  # The innovation fit scores every kind and keeps the best (the per-user anchor alone on training histories).
  assert set(sc["innovation_fit"]) == {"white", "spatial", "joint"}
  assert sc["innovation"] == min(sc["innovation_fit"], key=sc["innovation_fit"].get)
  speed = res["speeds"]["1"]
  assert speed["speed_kmh"] == 1.0 and (tmp_path / "data").is_dir() and speed["num_test"] == c.eval.unseen_num_test
  for r in [sc["main"], speed] + list(sc["unseen"].values()):
    # With the channel known, the SVD precoder maximizes eq. (25) with equal power on every PRB (the eigenvalues of
    # W^H H^H H W interlace with H^H H's): no precoder beats perfect CSI, up to float32 rounding.
    assert all(v <= r["se"]["perfect_csi"] + 1e-4 for v in r["se"].values()), r["se"]
    assert {"srs_baseline", "gaussian", "gauss_user", "noniden_train", "noniden_user"} <= set(r["nmse_db"])
    assert {"sample_cov", "gaussian_bayes", "gaussian_bayes_inf", "noniden_user_bayes", "gauss_user_bayes",
            "noniden_train_bayes"} <= set(r["se"])
  assert sc["unseen"]["hops:2"]["setting"]["num_hops"] == 2
  # Six occasions are more than the scenario's dataset holds: the scenario's preset is built with six, and the
  # age correlation fitted on it has one entry per occasion.
  longer = sc["unseen"]["occasions:6"]
  assert longer["setting"]["occasions"] == 6 and len(longer["age_correlation"]) == 6
  assert os.path.basename(longer["dataset"]).startswith("high_mobility_num_occasions6_")
  assert res["prior"]["rows"] == 4 * (32 - 8)                  # 4 UE antennas x the 24 histories trained on
  # The prior's loss beside its Gaussian bound on the same draws, and the learning-curve figure.
  bound = res["prior"]["velocity_bound"]
  assert all(np.isfinite(bound[k]) for k in ("model_loss", "paired_bound", "anchor_loss"))
  assert (tmp_path / "fig_learning_curve.png").stat().st_size > 1000
  # The tables are a function of results.json alone.
  text = (tmp_path / "tables.md").read_text()
  (tmp_path / "tables.md").unlink()
  noniden_srs_report.render(json.loads((tmp_path / "results.json").read_text()), str(tmp_path))
  assert (tmp_path / "tables.md").read_text() == text and "hops:2: 2 hops" in text and "1 km/h" in text
  # A rerun on other data does not resume this prior.
  c.data.held_out = 4
  with pytest.raises(ValueError, match="prior trained on other data"):
    noniden_srs.run(c, str(tmp_path))


def test_perception_rows_join_only_a_run_with_the_same_observations(tmp_path):
  import configs
  from jaxchan.experiments import noniden_srs
  c = configs.get("noniden_srs:quick")
  p = configs.get("perception:quick,high_mobility")
  table = {"table2": {"sl": {"nmse_db": -1.0}}, "table3": {"dm_bayes": 12.0}, "num_test": 256}
  res = {"config": json.loads(p.to_json()),
         "scenarios": {"high_mobility": {"eval": table, "training": {"dm": [{"seconds": 2.0}, {"seconds": 3.0}]}}}}
  (tmp_path / "results.json").write_text(json.dumps(res))
  c.eval.perception_results = str(tmp_path)
  rows = noniden_srs.perception_rows(c, "high_mobility")
  assert rows["table3"]["dm_bayes"] == 12.0 and rows["dm_train_seconds"] == 5.0
  with pytest.raises(ValueError, match="no results.json with scenario 'low_mobility'"):
    noniden_srs.perception_rows(c, "low_mobility")
  res["config"]["eval"]["batch_size"] = 64          # other batch offsets: other observation keys
  (tmp_path / "results.json").write_text(json.dumps(res))
  with pytest.raises(ValueError, match="eval.batch_size"):
    noniden_srs.perception_rows(c, "high_mobility")


def test_committed_quick_tables_re_render_from_results_json(tmp_path):
  # results.json stores its keys sorted; the tables come back in the configured order, byte for byte.
  from conftest import ROOT
  from jaxchan.experiments import noniden_srs_report
  src = os.path.join(ROOT, "docs", "results", "noniden_srs_quick")
  noniden_srs_report.render(json.load(open(os.path.join(src, "results.json"))), str(tmp_path))
  assert (tmp_path / "tables.md").read_text() == open(os.path.join(src, "tables.md")).read()
