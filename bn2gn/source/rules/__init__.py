"""One module per rule, named by its code: ``bn2gn101_replace_batchnorm`` ... ``bn2gn204_exclude_frozen``."""
