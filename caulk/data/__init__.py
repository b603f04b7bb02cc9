"""Downstream data: datasets, nested stratified n-subsets, the Lightning datamodule."""

from caulk.data.datamodule import DownstreamDataModule, build_datamodule
from caulk.data.subsets import nested_stratified_order, stratified_subset

__all__ = [
    "DownstreamDataModule",
    "build_datamodule",
    "nested_stratified_order",
    "stratified_subset",
]
