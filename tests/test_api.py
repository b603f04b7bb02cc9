"""The notebook entry: caulk.run_train trains as the CLI would and returns the records it wrote;
caulk.load reads them back as a table; import caulk stays light."""

import json
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

import caulk
import caulk.api
from caulk.errors import CaulkConfigError
from tests.conftest import FAST, REPO, compose_cfg

CURVE = [*FAST, "curve.n=[20,40]", "curve.seeds=[0,1]"]
POINTS = {(20, 0), (20, 1), (40, 0), (40, 1)}


@pytest.fixture(scope="module")
def curve_run(tmp_path_factory):
    """One tiny curve trained by caulk.run_train into a sweep's job dir: (sweep dir, records)."""
    sweep = tmp_path_factory.mktemp("sweep")
    return sweep, caulk.run_train(CURVE, output_dir=sweep / "0")


def test_import_caulk_loads_neither_torch_nor_hydra():
    script = (
        "import sys, caulk\n"
        "print([m for m in ('torch', 'pytorch_lightning', 'hydra', 'pandas') if m in sys.modules])\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def test_the_entry_is_caulk_api_s_on_first_use():
    assert caulk.load is caulk.api.load and caulk.run_train is caulk.api.run_train
    assert {"load", "run_train"} <= set(dir(caulk))


def test_an_unknown_attribute_of_caulk_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = caulk.no_such_name


def test_compose_train_composes_like_hydra_with_the_output_dir_given(tmp_path):
    overrides = ["model=vit_nano", "peft=lora", "curve.n=[16,32]", "seed=3"]
    ours = caulk.api.compose_train(overrides, output_dir=tmp_path / "out")
    hydras = compose_cfg(overrides, tmp_path / "out")
    assert OmegaConf.to_container(ours) == OmegaConf.to_container(hydras)


def test_run_train_returns_the_records_it_writes_one_per_point(curve_run):
    sweep, records = curve_run
    assert {(r["n"], r["seed"]) for r in records} == POINTS
    for r in records:
        assert r["status"] == "ok" and r["model"] == "vit_pico" and r["n_train_seen"] == r["n"]
        written = json.loads((sweep / "0" / f"n{r['n']}_s{r['seed']}" / "record.json").read_text())
        assert written == json.loads(json.dumps(r))


def test_run_train_defaults_to_a_fresh_run_dir_under_logs_like_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CAULK_ROOT", str(tmp_path))
    (record,) = caulk.run_train(FAST)
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", runs[0].name)
    assert json.loads((runs[0] / "record.json").read_text()) == json.loads(json.dumps(record))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=no_such_model"], "unknown model 'no_such_model'; available: resnet18,"),
        (["no_such_key=1"], "bad override in ['no_such_key=1']: Could not override 'no_such_key'"),
        (["data.n=[1"], "bad override in ['data.n=[1']: no viable alternative at input"),
        (["peft=linear,lora"], "Ambiguous value for argument 'peft=linear,lora'"),
        ("model=vit_pico", "overrides must be a list of 'key=value' strings"),
        ([3], "overrides must be a list of 'key=value' strings"),
        ([*FAST, "data.n=0"], "data.n must be positive, got 0"),
    ],
)
def test_bad_overrides_are_one_line_errors_before_any_work(
    tmp_path, monkeypatch, overrides, message
):
    monkeypatch.setenv("CAULK_ROOT", str(tmp_path))
    with pytest.raises(CaulkConfigError) as err:
        caulk.run_train(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_load_gives_a_row_per_record_ok_and_failed(curve_run):
    sweep, records = curve_run
    with pytest.raises(RuntimeError, match="boom at step 2"):
        caulk.run_train(
            [*FAST, "+callbacks.explode._target_=tests.helpers.ExplodingCallback"],
            output_dir=sweep / "1",
        )
    table = caulk.load(sweep)
    ok = table[table["status"] == "ok"]
    assert sorted(zip(ok["n"], ok["seed"], ok["test_error"], strict=True)) == sorted(
        (r["n"], r["seed"], r["test_error"]) for r in records
    )
    (failed,) = table[table["status"] == "failed"].itertuples()
    assert "boom at step 2" in failed.message and failed.record_path.startswith(str(sweep / "1"))


def test_load_reads_several_dirs_into_one_table(curve_run):
    sweep, records = curve_run
    table = caulk.load(sweep / "0" / "n20_s0", sweep / "0" / "n40_s1")
    assert sorted(zip(table["n"], table["seed"], strict=True)) == [(20, 0), (40, 1)]


def test_load_takes_a_list_of_dirs_as_it_takes_them_one_by_one(curve_run):
    sweep, _ = curve_run
    dirs = [sweep / "0" / "n20_s0", str(sweep / "0" / "n40_s1")]
    assert caulk.load(dirs).equals(caulk.load(*dirs))


@pytest.mark.parametrize(
    ("dirs", "message"),
    [
        ((), "load() needs at least one dir"),
        (("/no/such/sweep",), "sweep dir not found: /no/such/sweep"),
        ((["/nonexistent"],), "sweep dir not found: /nonexistent"),
        (([],), "load() needs at least one dir"),
        ((3,), "load() takes dirs as str or Path (or lists of them), got int: 3"),
    ],
)
def test_load_without_records_is_a_one_line_error(dirs, message):
    with pytest.raises(CaulkConfigError, match=re.escape(message)) as err:
        caulk.load(*dirs)
    assert "\n" not in str(err.value)
