"""`bn2gn scan --trace`: build the real model with torch and decide BatchNorm sites from evidence.

Kept out of ``bn2gn.analysis`` (static analysis, no torch) on purpose: this package depends on
the analysis and on ``bn2gn.checkpoint``, never the reverse.
"""
