"""Engines that train one point (``lightning``, ``cached``, ``batched``) and the ``strategy`` that
chooses one per curve. Each returns a ``base.PointResult``."""
