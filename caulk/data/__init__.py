"""Downstream data: datasets (registry), nested stratified n-subsets, the Lightning datamodule."""

from caulk.data.datamodule import DownstreamDataModule, build_datamodule
from caulk.data.registry import load_splits, register_dataset
from caulk.data.subsets import (
    few_shot_subset,
    nested_stratified_order,
    stratified_subset,
    vtab1k_split,
)

__all__ = [
    "DownstreamDataModule",
    "build_datamodule",
    "few_shot_subset",
    "load_splits",
    "nested_stratified_order",
    "register_dataset",
    "stratified_subset",
    "vtab1k_split",
]
