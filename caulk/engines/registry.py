"""The engines by name: one object per engine, each behind the ``caulk.engines.base.Engine``
interface, chosen per curve by ``caulk.engines.strategy.choose``. The name is the one the config
(``cache.loop``), the record (``train_loop``), the progress lines and the docs use."""

from __future__ import annotations

from caulk.engines.base import Engine
from caulk.engines.batched import BatchedHeadsEngine
from caulk.engines.cached import CachedEngine
from caulk.engines.lightning import LightningEngine
from caulk.engines.solvers import SolverEngine
from caulk.engines.suffix import BatchedSuffixEngine
from caulk.run.record import LEGACY_TRAIN_LOOPS


def engines_by_name(*engines: Engine) -> dict[str, Engine]:
    """``{name: engine}``; a name taken twice is refused (ValueError)."""
    names = [e.name for e in engines]
    taken = sorted({n for n in names if names.count(n) > 1})
    if taken:
        raise ValueError(f"engine names must be unique, taken twice: {', '.join(taken)}")
    return {e.name: e for e in engines}


#: every engine, by its one name
ENGINES: dict[str, Engine] = engines_by_name(
    LightningEngine(), CachedEngine(), BatchedSuffixEngine(), BatchedHeadsEngine(), SolverEngine()
)


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (or by a name records used before, e.g. ``fast``)."""
    try:
        return ENGINES[LEGACY_TRAIN_LOOPS.get(name, name)]
    except KeyError:
        raise KeyError(f"no engine {name!r}; engines: {', '.join(ENGINES)}") from None
