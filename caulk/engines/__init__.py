"""The engines that train a curve's points, one object each behind ``base.Engine``, by name in
``registry.ENGINES``, and the ``strategy`` that chooses one per curve."""
