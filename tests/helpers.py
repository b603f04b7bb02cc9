"""Objects the tests instantiate through Hydra configs."""

import pytorch_lightning as pl


class ExplodingCallback(pl.Callback):
    """Fails mid-training, to check that a failed run still leaves a (failed) record."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= 2:
            raise RuntimeError("boom at step 2")
