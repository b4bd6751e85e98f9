"""Runtime checks of a converted model (``bn2gn verify``, and the demo's checks): the recorder that
watches a training run, snapshots of norm layers, the checks, the bs=1 effects and the report.

Everything that needs torch imports it inside functions, so importing this package does not.
"""
