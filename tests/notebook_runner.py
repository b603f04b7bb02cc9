"""Execute the notebooks with a real Jupyter kernel: this interpreter, this checkout's caulk.

``python -m tests.notebook_runner [NOTEBOOK ...]`` (default: all of ``notebooks/``) re-executes
them and saves them with their outputs in place; run it after editing a notebook, and commit the
outputs. Their runs write below a fresh temporary dir (``CAULK_ROOT``), never into the checkout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK_DIR = REPO / "notebooks"
KERNEL = "caulk-notebooks"


def write_kernel_spec(root: Path, env: dict[str, str]) -> Path:
    """A kernel spec dir under ``root`` whose kernel is this interpreter with this checkout first
    on its path and ``env`` set; returns the dir holding ``kernels/``."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "caulk (this interpreter)",
        "language": "python",
        "env": {**env, "PYTHONPATH": path},
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return root


def run_notebook(path: Path, workdir: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """The notebook at ``path`` executed top to bottom in its own folder; its runs write below
    ``workdir``. A cell that raises fails the run (nbclient's CellExecutionError)."""
    env = {
        "CAULK_ROOT": str(workdir),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        # tqdm.auto in a kernel without ipywidgets: a warning naming this machine's venv
        "PYTHONWARNINGS": "ignore:IProgress not found",
    }
    specs = KernelSpecManager(kernel_dirs=[str(write_kernel_spec(workdir, env) / "kernels")])
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(cwd=str(path.parent))
    return nb


def main(argv: list[str]) -> None:
    """Re-execute the notebooks named (default: all) and save them with their outputs."""
    paths = [Path(a) for a in argv] or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="caulk-nb-") as workdir:
            nb = run_notebook(path, Path(workdir))
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(nb, path)
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
