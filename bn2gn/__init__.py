"""bn2gn: migrate CenterNet-family detectors from BatchNorm2d to GroupNorm in non-backbone layers."""

__version__ = "0.1.0"
