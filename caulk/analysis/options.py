"""What an analysis is asked and how it runs: the user's questions (targets, baseline, family)
and the options of ``caulk.analysis.pipeline.run_analysis``, each checked before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from caulk.analysis.answers import MAX_EXTRAPOLATION, parse_targets
from caulk.analysis.families import FAMILIES
from caulk.errors import CaulkConfigError

DEFAULT_GROUP_BY = (
    "data", "model", "weights", "source_m", "peft", "peft_knob_value", "curve_role"
)  # fmt: skip
#: the figure formats --format accepts; PNG is always written (the report embeds it)
FIGURE_FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class Questions:
    """What the user asked of the curves: target errors, a baseline curve, the curve family
    (``auto``: chosen per curve by backtest), whether D_T may extrapolate the scratch curve."""

    targets: tuple[float, ...] = ()
    baseline: dict[str, str] | None = None
    family: str = "auto"
    allow_extrapolation: bool = False
    max_extrapolation: float = MAX_EXTRAPOLATION

    @classmethod
    def parse(
        cls,
        targets: str | list[float] | None = None,
        baseline: str | None = None,
        family: str = "auto",
        allow_extrapolation: bool = False,
        max_extrapolation: float = MAX_EXTRAPOLATION,
    ) -> Questions:
        """Check the flags (one-line CaulkConfigError each) before any work."""
        if not max_extrapolation >= 1:  # also NaN
            raise CaulkConfigError(
                f"--max-extrapolation must be a factor >= 1, got {max_extrapolation}"
            )
        if family not in ("auto", *FAMILIES):
            raise CaulkConfigError(
                f"--family {family!r} is unknown; choose auto or one of {', '.join(FAMILIES)}"
            )
        if isinstance(targets, str) or targets is None:
            targets = parse_targets(targets)
        else:
            targets = parse_targets(",".join(str(t) for t in targets))
        selector = parse_selector(baseline, "--baseline") if baseline else None
        if selector == {}:
            raise CaulkConfigError(f"--baseline must look like key=value[,...], got {baseline!r}")
        if selector is not None and not targets:
            raise CaulkConfigError("--baseline compares n*(E): give --target-error too")
        return cls(tuple(targets), selector, family, allow_extrapolation, max_extrapolation)


def parse_selector(text: str, flag: str = "--scratch") -> dict[str, str]:
    """``key=value[,key=value]`` as a dict; a one-line CaulkConfigError naming ``flag`` else."""
    try:
        return dict(item.split("=", 1) for item in text.split(",") if item)
    except ValueError:
        raise CaulkConfigError(
            f"{flag} must look like key=value[,key=value], got {text!r}"
        ) from None


def parse_formats(formats: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"png,pdf"`` (or a list) as a tuple of figure formats, PNG first; CaulkConfigError for
    an unknown or empty one."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [str(f).strip().lower().lstrip(".") for f in names]
    bad = [f for f in names if f not in FIGURE_FORMATS]
    if bad or not names:
        raise CaulkConfigError(
            f"--format: unknown figure format {(bad[0] if bad else formats)!r}; "
            f"choose from {', '.join(FIGURE_FORMATS)} (comma-separated)"
        )
    return tuple(dict.fromkeys(["png", *names]))


def selector_text(selector: dict[str, str]) -> str:
    """A selector written back as ``key=value,...``."""
    return ",".join(f"{k}={v}" for k, v in selector.items())


@dataclass(frozen=True)
class AnalysisOptions:
    """How ``run_analysis`` reads the sweeps and what it writes (the CLI's flags): checked and
    normalised on construction, so bad input fails in one line before any work."""

    out: Path | None = None  # default: <first sweep dir>/analysis
    metric: str | None = None  # default: test_error, or excess_risk for theory records
    group_by: list[str] | None = None  # default: the records' curve_keys, else DEFAULT_GROUP_BY
    replicates: int = 200
    scratch: str = "peft=full,weights=none"
    low_data_max_n: float | None = None
    wandb_mode: str = "off"
    wandb_project: str = "caulk"
    wandb_group: str | None = None
    rng_seed: int = 0
    formats: tuple[str, ...] = ("png",)
    questions: Questions = field(default_factory=lambda: Questions())
    scratch_selector: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        if self.replicates < 0:
            raise CaulkConfigError(f"--bootstrap must be >= 0, got {self.replicates}")
        object.__setattr__(self, "formats", parse_formats(self.formats))
        object.__setattr__(self, "scratch_selector", parse_selector(self.scratch))
        object.__setattr__(self, "out", Path(self.out) if self.out else None)
