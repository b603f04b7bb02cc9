"""Lightning callbacks of caulk."""

from caulk.callbacks.scaling import ScalingPointLogger

__all__ = ["ScalingPointLogger"]
