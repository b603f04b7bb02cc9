"""Numbers that cannot go stale: the figures the README and docs quote are generated from
measurement files in docs/numbers/ (``docs/make_numbers.py``), each with its machine, commit,
date and command; a stale region, a region without a renderer, a source without provenance and a
timing typed by hand into the README or any docs page each fail here."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "docs"))

import make_numbers  # noqa: E402

from caulk import provenance  # noqa: E402

#: a measured time or ratio: "264 s", "0.83 s", "1.48x", "5×"
TIMING = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b|\b\d+(?:\.\d+)?[x×](?!\w)")
#: what TIMING also matches that is a setting, not a measurement: the extrapolation factors
#: asked about ("at 4x beyond the largest n", the LCDB settings "4x" / "8x", rows "auto>16x") and
#: the "within 2x" accuracy band
SETTINGS = {"README.md": {"4x"}, "docs/analysis.md": {"2x", "4x", "8x", "16x"}}
#: figures quoted from a generated file that holds them (checked below): page -> figure -> file
QUOTED = {
    "docs/zoo-and-demo.md": {
        "4.6×": "docs/figures/demo_output.txt",
        "5.4×": "docs/figures/demo_output.txt",
    }
}
#: every page of the README and the docs site, except the generated docs/figures/
DOC_PAGES = sorted(
    str(p.relative_to(REPO))
    for p in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]
    if "figures" not in p.parts
)


def _copy(tmp_path: Path) -> Path:
    for page in make_numbers.PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / page, tmp_path / page)
    shutil.copytree(make_numbers.SOURCES, tmp_path / "docs" / "numbers")
    return tmp_path


def test_every_generated_region_matches_its_source():
    proc = subprocess.run(
        [sys.executable, "docs/make_numbers.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    names = {
        m.group(2)
        for p in make_numbers.PAGES
        for m in make_numbers.REGION.finditer((REPO / p).read_text())
    }
    assert names == set(make_numbers.RENDERERS)  # every renderer is used, every region has one


def test_a_changed_measurement_makes_its_regions_stale_until_regenerated(tmp_path, capsys):
    root = _copy(tmp_path)
    src = root / "docs" / "numbers" / "demo_zoo_cached.json"
    data = json.loads(src.read_text())
    src.write_text(json.dumps({**data, "total_s": 1234.4}))
    assert make_numbers.main(["--check"], root=root) == 1
    err = capsys.readouterr().err
    assert "README.md: region 'readme-demo' differs" in err
    assert "docs/zoo-and-demo.md: region 'demo-time' differs" in err
    assert make_numbers.main([], root=root) == 0
    assert "and 1234 s with the zoo cached" in (root / "README.md").read_text()
    assert "**1234 s with the zoo cached**" in (root / "docs" / "zoo-and-demo.md").read_text()
    assert make_numbers.main(["--check"], root=root) == 0


def test_a_source_without_provenance_and_an_unknown_region_are_refused(tmp_path):
    root = _copy(tmp_path)
    src = root / "docs" / "numbers" / "demo_empty_zoo.json"
    data = json.loads(src.read_text())
    src.write_text(json.dumps({k: v for k, v in data.items() if k != "commit"}))
    with pytest.raises(ValueError, match="demo_empty_zoo.json has no commit"):
        make_numbers.main(["--check"], root=root)
    with pytest.raises(ValueError, match="no renderer for the region 'numbers: typo'"):
        make_numbers.render("a <!-- numbers: typo -->1 s<!-- /numbers --> b")


def test_every_source_names_its_machine_commit_date_and_command():
    for path in sorted(make_numbers.SOURCES.glob("*.json")):
        src = make_numbers.load(path.stem)
        assert src["machine"]["cpu"] and src["machine"]["cores"] >= 1, path
        assert re.fullmatch(r"[0-9a-f]{7,}(\+dirty|-dirty)?", src["commit"]), path
        assert src["command"].startswith("python "), path


@pytest.mark.parametrize("page", DOC_PAGES)
def test_no_page_quotes_a_timing_typed_by_hand(page):
    text = make_numbers.outside_regions((REPO / page).read_text())
    by_hand = set(TIMING.findall(text)) - SETTINGS.get(page, set())
    quoted = QUOTED.get(page, {})
    assert by_hand <= set(quoted), sorted(by_hand - set(quoted))
    for figure, source in quoted.items():
        assert figure in text, (figure, "no longer quoted: drop it from QUOTED")
        assert figure.replace("×", "x") in (REPO / source).read_text(), (figure, source)


def test_the_timing_pattern_catches_measurements_and_spares_words():
    found = TIMING.findall("took 264 s, 0.83 s per fit, 45 ms, 3 min; 1.48x and 5× faster")
    assert found == ["264 s", "0.83 s", "45 ms", "3 min", "1.48x", "5×"]
    assert TIMING.findall("in seconds, 3x3 kernels, 8 seeds, vit_s16") == []


def test_the_commit_is_dirty_when_code_differs_not_when_a_doc_does(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    (tmp_path / "caulk").mkdir()
    (tmp_path / "caulk" / "x.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("264 s\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    clean = provenance.git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{7,}", clean)
    (tmp_path / "README.md").write_text("280 s\n")
    assert provenance.git_commit(tmp_path) == clean
    (tmp_path / "caulk" / "x.py").write_text("a = 2\n")
    assert provenance.git_commit(tmp_path) == clean + "+dirty"
    assert provenance.git_commit(tmp_path / "nowhere") == "unknown"
