"""The notebooks: committed executed (outputs small, no errors), built on caulk's entry and figures,
and they run top to bottom with a real Jupyter kernel (slow)."""

import base64
import re

import nbformat
import pytest

from tests.conftest import REPO
from tests.notebook_runner import NOTEBOOK_DIR, run_notebook

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: text each notebook's outputs must show (its records counted)
EXPECTED = {
    "01_records_to_curve.ipynb": "8 records, 0 failed",
    "scaling_curves.ipynb": "16 records (16 ok, 0 failed), 0 unreadable, 0 missing jobs",
}
MAX_BYTES = 300_000
#: drawing by hand instead of with caulk.analysis.plots
HAND_PLOTTING = re.compile(r"\bimport matplotlib|\bfrom matplotlib\b|\bplt\.|\.plot\(")
#: this machine's paths have no place in committed outputs
MACHINE_PATHS = re.compile(r"/tmp/|site-packages|" + re.escape(str(REPO)))


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _outputs(nb):
    return [o for c in _code_cells(nb) for o in c.get("outputs", [])]


def _text(nb) -> str:
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in _outputs(nb)
    )


def test_every_notebook_has_its_expected_output():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_executed_top_to_bottom_with_small_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    counts = [c.execution_count for c in _code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), f"not run top to bottom in one go: {counts}"
    assert not [o for o in _outputs(nb) if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in _outputs(nb)), "no figure in the outputs"
    assert EXPECTED[path.name] in _text(nb)
    assert not MACHINE_PATHS.findall(_text(nb))
    assert path.stat().st_size < MAX_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_uses_caulks_entry_and_figures_not_hand_plotting(path):
    source = "\n".join(c.source for c in _code_cells(nbformat.read(path, as_version=4)))
    assert "caulk.run_train(" in source and "caulk.load(" in source
    assert "from caulk.analysis.plots import" in source
    assert not HAND_PLOTTING.findall(source)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.delenv("CAULK_RECORDS_DIR", raising=False)
    monkeypatch.delenv("CAULK_SWEEP_DIR", raising=False)
    nb = run_notebook(path, tmp_path)  # a cell that raises fails here
    assert EXPECTED[path.name] in _text(nb)
    figures = [o.data["image/png"] for o in _outputs(nb) if "image/png" in o.get("data", {})]
    assert figures and all(base64.b64decode(f).startswith(b"\x89PNG") for f in figures)
