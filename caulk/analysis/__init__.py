"""Aggregation and analysis of sweeps: records -> table -> fits -> transfer -> figures -> report."""

from caulk.analysis.answers import ratios, sample_complexity
from caulk.analysis.collect import collect_records
from caulk.analysis.families import FAMILIES, fit_family
from caulk.analysis.fits import (
    CurveFit,
    bootstrap_over_seeds,
    fit_groups,
    fit_offset_power_law,
    fit_power_law,
)
from caulk.analysis.transfer import effective_data_transferred, fit_transfer_law

__all__ = [
    "FAMILIES",
    "CurveFit",
    "fit_family",
    "ratios",
    "sample_complexity",
    "bootstrap_over_seeds",
    "collect_records",
    "effective_data_transferred",
    "fit_groups",
    "fit_offset_power_law",
    "fit_power_law",
    "fit_transfer_law",
]
