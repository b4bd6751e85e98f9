"""The bottom layer: errors and exit codes, settings, the rule codes, reading and writing source
files, file discovery, per-file results, progress and worker processes, the ``ast`` toolkit.

Nothing here imports torch, LibCST or click, nor any other layer of bn2gn.
"""
