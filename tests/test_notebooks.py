"""Notebooks run top to bottom (executed with a real Jupyter kernel)."""

import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("CAULK_RECORDS_DIR", raising=False)
    monkeypatch.delenv("CAULK_SWEEP_DIR", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert EXPECTED[path.name] in outputs


EXPECTED = {
    "01_records_to_curve.ipynb": "8 records, 0 failed",
    "scaling_curves.ipynb": "16 records, 0 failed, 0 missing jobs",
}
