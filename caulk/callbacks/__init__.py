"""Lightning callbacks of caulk."""

from caulk.callbacks.scaling import ScalingPointLogger, log_scaling_point

__all__ = ["ScalingPointLogger", "log_scaling_point"]
