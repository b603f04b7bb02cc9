"""Packaging: setup.cfg and environment.yml install the same things; the Makefile and CI agree."""

import configparser
import re

import yaml

from tests.conftest import REPO


def _names(reqs):
    return {re.split(r"[<>=!~\[ ]", r.strip(), maxsplit=1)[0].lower() for r in reqs if r.strip()}


def test_environment_yml_matches_setup_cfg():
    cp = configparser.ConfigParser()
    cp.read(REPO / "setup.cfg")
    install = cp["options"]["install_requires"].strip().splitlines()
    extras = [
        line for _, v in cp["options.extras_require"].items() for line in v.strip().splitlines()
    ]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pkgs = [p for p in pip if not p.startswith("-e")]
    assert sorted(map(str.strip, install + extras)) == sorted(conda_pkgs)
    assert {"torch", "pytorch-lightning", "hydra-core", "torchmetrics", "timm", "wandb"} <= _names(
        install
    )
    assert "-e ." in pip


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test\b", ci, re.M)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^demo:", makefile, re.M)
