"""Caching the frozen prefix: ``prefix`` plans and runs it, ``extract`` computes its outputs once,
``store`` keeps them on disk for a sweep, ``data`` serves them as the uncached path's batches."""
