"""Static analysis: where BatchNorm is built, and whether each site is backbone or not."""
