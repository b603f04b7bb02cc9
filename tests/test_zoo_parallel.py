"""Zoo entries pre-trained in parallel worker processes (caulk.zoo.parallel), and the demo's use."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from caulk.demo import check_demo_overrides, demo_sweeps, zoo_jobs
from caulk.errors import CaulkConfigError
from caulk.pretrain import pretrain
from caulk.zoo.parallel import ZooJob, build_parallel, missing
from tests.conftest import CONF, compose_cfg
from tests.test_zoo import TINY_SOURCE, random_imagefolder


def zoo_job(zoo, model: str, m: int, *overrides: str) -> ZooJob:
    """The zoo entry a ``caulk.train`` job with these overrides loads."""
    cfg = compose_cfg(
        [f"model={model}", "model.weights=zoo", f"model.source_m={m}", f"paths.zoo_dir={zoo}"]
        + [*TINY_SOURCE, *overrides]
    )
    return ZooJob.from_config(cfg)


def pretrain_alone(zoo, model: str, m: int) -> dict:
    """``caulk.pretrain`` of one entry in this process, as the command line runs it."""
    overrides = [f"model={model}", f"model.source_m={m}", f"paths.zoo_dir={zoo}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("pretrain", overrides=[*overrides, "progress_bar=false", *TINY_SOURCE])
    return pretrain(cfg)


def test_missing_entries_are_distinct_and_costliest_first(tmp_path):
    zoo = tmp_path / "zoo"
    femto, nano, pico = (zoo_job(zoo, f"vit_{s}", 40) for s in ("femto", "nano", "pico"))
    random_init = zoo_job(zoo, "vit_nano", 0)
    todo = missing([femto, random_init, pico, femto, nano, pico])
    assert [j.entry.name.split("-")[0] for j in todo] == [
        "caulk_vit_nano",
        "caulk_vit_pico",
        "caulk_vit_femto",
        "caulk_vit_nano",  # m=0 trains nothing
    ]
    assert todo[-1].model["source_m"] == 0
    assert ZooJob.from_config(compose_cfg(["model=vit_femto"])) is None  # weights=none


def test_parallel_builds_equal_one_thread_builds_and_are_not_repeated(tmp_path, capfd):
    """Two workers, one thread each: every entry is bit-identical to ``caulk.pretrain`` with
    ``CAULK_THREADS=1``, the workers' output goes to the log, and nothing is built twice."""
    zoo = tmp_path / "zoo"
    jobs = [
        zoo_job(zoo, "vit_femto", 40),
        zoo_job(zoo, "vit_pico", 40),
        zoo_job(zoo, "vit_pico", 0),
    ]
    seen = []
    built = build_parallel(
        jobs + jobs[:1], workers=2, log_path=tmp_path / "zoo.log", on_built=seen.append
    )
    assert sorted(m["name"] for m in built) == sorted(j.entry.name for j in jobs)
    assert seen == built and all(m["built"] and m["torch_threads"] == 1 for m in built)
    log = (tmp_path / "zoo.log").read_text()
    assert "pre-training step 1/3" in log and "GPU available" in log
    captured = capfd.readouterr()
    assert "GPU available" not in captured.out + captured.err
    threads = torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CAULK_THREADS", "1")
            for model, m in (("vit_femto", 40), ("vit_pico", 40)):
                alone = pretrain_alone(tmp_path / "alone", model, m)
                (twin,) = [b for b in built if b["name"] == alone["name"]]
                assert alone["torch_threads"] == 1 and alone["sha256"] == twin["sha256"]
    finally:
        torch.set_num_threads(threads)
    stamps = {p: p.stat().st_mtime_ns for p in zoo.iterdir()}
    assert build_parallel(jobs, workers=2) == [] and missing(jobs) == []
    assert {p: p.stat().st_mtime_ns for p in zoo.iterdir()} == stamps


def test_a_failing_build_is_raised_and_writes_no_entry(tmp_path):
    random_imagefolder(tmp_path / "src", per_class=6, size=8)
    zoo = tmp_path / "zoo"
    too_large = zoo_job(
        zoo, "vit_femto", 40, "source_task=imagefolder", f"source_task.root={tmp_path / 'src'}"
    )
    with pytest.raises(CaulkConfigError, match="fewer than source_m=40"):
        build_parallel([too_large], log_path=tmp_path / "zoo.log")
    assert not list(zoo.glob("*.json")) and not list(zoo.glob("*.safetensors"))


def test_the_demo_prebuilds_each_zoo_entry_its_sweeps_load_once(tmp_path):
    sweeps = demo_sweeps(["vit_femto", "vit_pico"], [0, 250, 4000], "vit_pico", lora=True)
    jobs = zoo_jobs(check_demo_overrides(sweeps, [f"paths.zoo_dir={tmp_path}"]))
    wanted = {(j.model["arch"], j.model["source_m"]) for j in jobs}
    assert wanted == {
        ("caulk_vit_femto", 0),
        ("caulk_vit_femto", 4000),
        ("caulk_vit_pico", 0),
        ("caulk_vit_pico", 250),
        ("caulk_vit_pico", 4000),
    }
    assert len(missing(jobs)) == 5 and {j.zoo_dir for j in jobs} == {str(tmp_path)}
