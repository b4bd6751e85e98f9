"""Building and loading the user's model: the model spec (``--model`` / ``--script``), import
stand-ins, offline weights, the repository's options object, checkpoint files, BatchNorm statistics.

Above ``core`` only; torch is imported inside functions.
"""
