"""Theory companions: small simulations whose answers are known, run and recorded like sweeps.

- :mod:`caulk.theory.linear_teacher`: linear regression (and deep linear networks) fine-tuned
  starting from source weights, checked against closed forms (seed 001, linear teachers).
- :mod:`caulk.theory.caulking`: a controlled head ∘ adapter ∘ features regression where the
  features are estimated from m source samples (seed 000, caulking).

Both are ``run(cfg) -> records`` functions with a ``@hydra.main`` entry, writing one
``record.json`` per (configuration, n) point.
"""
