"""Write ``examples/quickstart.ipynb`` from its percent-format source ``examples/quickstart.py``.

  python examples/make_notebook.py [--check]

``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell (its lines without the leading ``# ``). The
notebook is committed without outputs; ``--check`` exits 1 when the committed notebook differs from the source
(tests/test_quickstart.py runs it).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE, NOTEBOOK = os.path.join(HERE, "quickstart.py"), os.path.join(HERE, "quickstart.ipynb")


def cells(text: str) -> list[dict]:
  out = []
  for block in text.split("# %%")[1:]:
    header, _, body = block.partition("\n")
    lines = body.strip("\n").split("\n")
    if header.strip() == "[markdown]":
      src = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
      out.append({"cell_type": "markdown", "metadata": {}, "source": [ln + "\n" for ln in src[:-1]] + src[-1:]})
    else:
      out.append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                  "source": [ln + "\n" for ln in lines[:-1]] + lines[-1:]})
  return out


def notebook(text: str) -> str:
  nb = {"cells": cells(text), "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                          "name": "python3"},
                                           "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
  return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv) -> int:
  want = notebook(open(SOURCE).read())
  if "--check" in argv:
    have = open(NOTEBOOK).read() if os.path.exists(NOTEBOOK) else ""
    if have != want:
      print(f"{NOTEBOOK} is out of date; run python examples/make_notebook.py", file=sys.stderr)
      return 1
    return 0
  with open(NOTEBOOK, "w") as f:
    f.write(want)
  print(f"wrote {NOTEBOOK}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
