"""``bn2gn demo``: the whole migration on a copy of the bundled fixture detector, then smoke training
under a harness with every check printed.
"""
