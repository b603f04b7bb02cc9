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
