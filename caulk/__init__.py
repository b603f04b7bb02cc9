"""caulk: downstream scaling curves for frozen timm backbones with pluggable PEFT modules."""

__version__ = "0.1.0"
