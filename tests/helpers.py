"""Objects the tests instantiate through Hydra configs."""

import pytorch_lightning as pl


class ExplodingCallback(pl.Callback):
    """Fails mid-training, to check that a failed run still leaves a (failed) record."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= 2:
            raise RuntimeError("boom at step 2")


class InterruptAtStep(pl.Callback):
    """Stands in for a preemption: raises after ``CAULK_TEST_INTERRUPT_AT`` optimizer steps.

    Controlled by the environment, so the interrupted and the resumed run share one config.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import os

        step = int(os.environ.get("CAULK_TEST_INTERRUPT_AT", "0"))
        only_n = os.environ.get("CAULK_TEST_INTERRUPT_N")  # interrupt only the point with this n
        if only_n and int(only_n) != pl_module.hparams["data"]["n"]:
            return
        if step and trainer.global_step >= step:
            raise RuntimeError(f"interrupted at step {step}")


class WaitForPreemption(pl.Callback):
    """In job ``CAULK_TEST_PREEMPT_JOB`` of a Slurm sweep, first attempt only: after the checkpoint
    at step ``CAULK_TEST_PREEMPT_AT``, write ``<output dir>/waiting`` and wait (up to 5 minutes)
    for the test to preempt the job. The requeued attempt (SLURM_RESTART_COUNT > 0) runs through.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import os
        import time
        from pathlib import Path

        from hydra.core.hydra_config import HydraConfig

        step = int(os.environ.get("CAULK_TEST_PREEMPT_AT", "0"))
        job = os.environ.get("CAULK_TEST_PREEMPT_JOB", "0")
        first_attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0
        if not step or trainer.global_step != step or not first_attempt:
            return
        if str(HydraConfig.get().job.num) != job:
            return
        out = Path(HydraConfig.get().runtime.output_dir)
        (out / "waiting").write_text(os.environ.get("SLURM_JOB_ID", ""))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # submitit's USR2 handler requeues and exits from here
            time.sleep(0.1)
        raise RuntimeError("the test never preempted this job")


class WaitForSigterm(pl.Callback):
    """In the curve point with n = ``CAULK_TEST_SIGTERM_N``, after 3 steps: write
    ``<point dir>/waiting_for_sigterm`` and wait (up to 5 minutes) for the test to send SIGTERM,
    so the signal lands while that point is surely training."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import os
        import time
        from pathlib import Path

        n = os.environ.get("CAULK_TEST_SIGTERM_N")
        if not n or int(n) != pl_module.hparams["data"]["n"] or trainer.global_step != 3:
            return
        (Path(trainer.default_root_dir) / "waiting_for_sigterm").write_text("")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # caulk's SIGTERM handler raises from here
            time.sleep(0.1)
        raise RuntimeError("the test never sent SIGTERM")
