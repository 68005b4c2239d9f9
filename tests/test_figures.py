"""Every figure the reports draw reads on its own: re-rendered from the committed results, each figure has a
bounded size, labelled axes, a title, a legend where it has several curves, a colorbar where it shows an image,
and a PDF beside its PNG."""

import os
import shutil

import pytest
from conftest import ROOT

from jaxchan import files
from jaxchan.experiments import report

RESULTS = ["noniden_quick", "noniden_quick_main", "perception_quick_gpu", "perception_quick_anchored", "mobility",
           "perception_oracle_mixture"]
# One report of each big experiment in the fast tier; the rest (the same drawing code on other runs, 2-5 s each)
# in the full suite.
FAST = ("noniden_quick", "perception_oracle_mixture")


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in RESULTS])
def test_figures_are_labelled_and_sized(tmp_path, monkeypatch, name):
  wd = tmp_path / name
  wd.mkdir()
  shutil.copy(os.path.join(ROOT, "docs", "results", name, "results.json"), wd / "results.json")
  saved = {}
  real = files.atomic_save_figure

  def capture(fig, path, **kw):
    saved[os.path.basename(path)] = fig
    real(fig, path, **kw)

  monkeypatch.setattr(files, "atomic_save_figure", capture)
  report.render(str(wd))
  assert saved, f"{name}: no figure drawn"
  for fname, fig in saved.items():
    # Size: readable on a page or a screen (no 2376 x 352 strips): at most 16 x 12 inches, aspect within 1:4.
    w, h = fig.get_size_inches()
    assert w <= 16 and h <= 12 and 0.25 <= h / w <= 2.5, (fname, w, h)
    assert (wd / fname).stat().st_size > 5000 and (wd / fname.replace(".png", ".pdf")).stat().st_size > 5000
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]
    titled = bool(fig._suptitle and fig._suptitle.get_text())
    for ax in axes:
      where = f"{name}/{fname}"
      twins = [o for o in axes if o is not ax and o.get_position().bounds == ax.get_position().bounds]
      assert ax.get_xlabel() or any(t.get_xlabel() for t in twins), f"{where}: an axis has no x label"
      shares_y = any(ax.get_ylabel() for ax in axes if ax.get_subplotspec() and ax.get_subplotspec().colspan.start == 0)
      assert ax.get_ylabel() or shares_y, f"{where}: an axis has no y label"
      assert ax.get_title() or titled or any(t.get_title() for t in twins), f"{where}: an axis has no title"
      if ax.images:
        assert any(cb_ax.get_label() == "<colorbar>" for cb_ax in fig.axes), f"{where}: an image without colorbar"
      for label in (ax.get_xlabel(), ax.get_ylabel()):
        if "NMSE" in label:
          assert "dB" in label or "linear" in label, f"{where}: NMSE axis {label!r} names no unit"
        if "SE" in label.split():
          assert "bps/Hz" in label or "bit/s/Hz" in label, f"{where}: SE axis {label!r} names no unit"
    curves = [ln for ax in axes for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    if len(curves) > 1:
      assert any(ax.get_legend() for ax in fig.axes) or fig.legends, f"{name}/{fname}: curves without a legend"
    # Curves of one axis differ by more than colour: a marker or line style apart (greyscale print).
    for ax in axes:
      styles = [(ln.get_marker(), ln.get_linestyle()) for ln in ax.get_lines() if not ln.get_label().startswith("_")
                and len(ln.get_xdata()) > 2]
      assert len(set(styles)) >= min(len(styles), 3) or len(styles) <= 1, (name, fname, styles)
