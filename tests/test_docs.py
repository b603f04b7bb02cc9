"""The docs: the site builds with ``mkdocs build --strict`` (no broken link, anchor, nav entry or
API page), the README stays a landing page whose docs links all land on a page of the site, and
``docs/make_figures.py`` (``make figures``) turns a demo's analysis into the docs' tables."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, cli_env

README_MAX_LINES = 200
#: a markdown link or image whose target is a file under docs/, with an optional anchor
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+)(#[^)\s]*)?\)")


def _load_make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", REPO / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_figures = _load_make_figures()


def nav_pages(config_path: Path = REPO / "mkdocs.yml") -> set[str]:
    """Every page (path under docs/) in mkdocs.yml's nav."""
    pages: set[str] = set()

    def walk(node):
        if isinstance(node, str):
            pages.add(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)

    walk(yaml.safe_load(config_path.read_text())["nav"])
    return pages


def broken_docs_links(markdown: str, repo: Path = REPO) -> list[str]:
    """The docs links of ``markdown`` (a file at the repo root) that do not land on a page in the
    site's nav (or, for other files such as images, on an existing file)."""
    nav = nav_pages(repo / "mkdocs.yml")
    broken = []
    for target, _anchor in DOCS_LINK.findall(markdown):
        inside = target.removeprefix("docs/")
        exists = (repo / target).is_file()
        if not exists or (target.endswith(".md") and inside not in nav):
            broken.append(target)
    return broken


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "mkdocstrings_handlers")),
    reason="mkdocs, mkdocs-material or mkdocstrings[python] not installed (the dev extra has them)",
)
def test_the_site_builds_strict_with_an_api_reference(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in nav_pages():
        built = site / Path(page).with_suffix("") / "index.html"
        if page == "index.md":
            built = site / "index.html"
        elif page.endswith("/index.md"):
            built = site / Path(page).parent / "index.html"
        assert built.is_file(), page
    # the API reference is generated from the code: a public function of each group is there
    for page, name in [
        ("reference/analysis", "caulk.analysis.fit_family"),
        ("reference/train", "caulk.plan.make_plan"),
        ("reference/peft", "caulk.peft.merge_lora"),
        ("reference/tune", "caulk.tune"),
    ]:
        assert f'id="{name}"' in (site / page / "index.html").read_text(), (page, name)


def test_readme_is_a_landing_page_whose_docs_links_land_on_pages():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    links = DOCS_LINK.findall(readme)
    assert len(links) >= 10, "the README links the docs pages"
    assert broken_docs_links(readme) == []
    assert "make test" in readme and "make demo" in readme


def test_a_broken_or_unlisted_docs_link_is_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "listed.md").write_text("# listed\n")
    (tmp_path / "docs" / "unlisted.md").write_text("# unlisted\n")
    (tmp_path / "mkdocs.yml").write_text("nav:\n  - Listed: listed.md\n")
    text = "[a](docs/listed.md) [b](docs/missing.md#x) [c](docs/unlisted.md) ![d](docs/a.png)"
    assert broken_docs_links(text, tmp_path) == [
        "docs/missing.md",
        "docs/unlisted.md",
        "docs/a.png",
    ]


def _demo_table() -> pd.DataFrame:
    """Records as analyze's table.csv has them: 2 models, linear (m 0 and 4000) and lora, 2 seeds,
    one failed record that must not count."""
    rng = np.random.default_rng(0)
    rows = []
    for model in ("vit_a", "vit_b"):
        for peft, m in (("linear", 0), ("linear", 4000), ("lora", 4000)):
            for n in (10, 40, 160):
                for seed in (0, 1):
                    rows.append(
                        dict(model=model, peft=peft, source_m=m, n=n, seed=seed, status="ok")
                        | dict(test_error=float(rng.uniform(0.1, 0.9)))
                    )
    rows.append(dict(model="vit_a", peft="linear", source_m=0, n=10, seed=2, status="failed"))
    return pd.DataFrame(rows)


def test_figure_tables_average_ok_records_over_seeds():
    table = _demo_table()
    wide = make_figures.error_by_n(table)
    ok = table[table["status"] == "ok"]
    for (model, peft, m), row in wide.iterrows():
        for n in (10, 40, 160):
            sel = ok[(ok.model == model) & (ok.peft == peft) & (ok.source_m == m) & (ok.n == n)]
            assert len(sel) == 2
            assert row[f"n={n}"] == pytest.approx(np.mean(sel["test_error"].to_numpy()))
    small = make_figures.small_n_error(table, small_n=40)
    assert list(small.columns) == ["m=0", "m=4000"]  # linear probes only: no lora column
    sel = ok[(ok.model == "vit_b") & (ok.peft == "linear") & (ok.source_m == 4000) & (ok.n <= 40)]
    assert len(sel) == 4 and small.loc["vit_b", "m=4000"] == pytest.approx(sel.test_error.mean())


def test_markdown_table_has_a_row_per_entry_and_a_dash_for_missing():
    frame = pd.DataFrame({"n=10": [0.5, np.nan], "n=40": [0.25, 0.125]}, index=["a", "b"])
    lines = make_figures.markdown_table(frame.rename_axis("model")).splitlines()
    assert lines[0] == "| model | n=10 | n=40 |"
    assert lines[2:] == ["| a | 0.500 | 0.250 |", "| b | — | 0.125 |"]


def test_write_docs_copies_figures_and_says_where_it_was_measured(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    analysis = demo / "analysis"
    analysis.mkdir(parents=True)
    table = _demo_table().assign(zoo_entry="caulk_vit_a-m4000-s0-abc")
    table.to_csv(analysis / "table.csv", index=False)
    fits = pd.DataFrame(
        dict(model=["vit_a"], peft=["linear"], source_m=[0], family=["pow3"], c=[0.9])
        | dict(rate=[0.3], rate_lo=[0.2], rate_hi=[0.4], asymptote=[0.05])
    )
    fits.to_csv(analysis / "fits.csv", index=False)
    (analysis / "error_vs_n.png").write_bytes(b"png bytes")
    zoo = tmp_path / "cache" / "zoo"
    zoo.mkdir(parents=True)
    (zoo / "caulk_vit_a-m4000-s0-abc.json").write_text('{"torch_threads": 3}')
    monkeypatch.setenv("CAULK_CACHE", str(tmp_path / "cache"))
    docs = tmp_path / "figures"
    make_figures.write_docs(
        demo, docs, ["python", "-m", "caulk.demo"], 12.0, "demo output\n", "abc123"
    )
    assert (docs / "demo_error_vs_n.png").read_bytes() == b"png bytes"
    assert not (docs / "demo_exponents.png").exists()  # the demo made none: nothing stale copied
    text = (docs / "demo_tables.md").read_text()
    assert make_figures.cpu_model() in text and f"{os.cpu_count()} cores" in text
    assert "caulk_vit_a-m4000-s0-abc: 3" in text  # the zoo entry's own thread count
    assert "`python -m caulk.demo`" in text and "commit `abc123`" in text
    assert (
        "| vit_a | linear | 0 | pow3 | 0.300 | 0.200 | 0.400 | 0.050 |" in text
    )  # the model's rate
    assert (docs / "demo_output.txt").read_text() == "demo output\n"


@pytest.mark.slow
def test_make_figures_runs_a_reduced_demo_into_the_docs_files(tmp_path):
    """``docs/make_figures.py`` end to end on a reduced demo (one tiny zoo model, 2 seeds)."""
    docs = tmp_path / "figures"
    proc = subprocess.run(
        [sys.executable, "docs/make_figures.py", "--out", str(tmp_path), "--docs", str(docs)]
        + ["--models", "vit_femto", "--m-sweep-model", "vit_femto", "--source-m", "0,250"]
        + ["--no-lora", "curve.seeds=[0,1]", "curve.n=[10,40,160]"],
        cwd=REPO,
        env=cli_env(PYTHONPATH=str(REPO), CAULK_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in ("demo_error_vs_n.png", "demo_error_vs_source_m.png", "demo_output.txt"):
        assert (docs / name).stat().st_size > 0, name
    table = pd.read_csv(tmp_path / "demo" / "analysis" / "table.csv")
    text = (docs / "demo_tables.md").read_text()
    # every mean in the docs' table is the records' own mean over the 2 seeds
    for (m, n), sel in table[table.status == "ok"].groupby(["source_m", "n"]):
        assert len(sel) == 2
        assert f"{sel.test_error.mean():.3f}" in text, (m, n)
    assert "caulk_vit_femto-m250-s0-" in text and "`python -m caulk.demo --models vit_femto" in text
