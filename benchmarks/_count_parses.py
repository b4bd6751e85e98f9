"""Run ``python -m bn2gn ARGS`` in this process and count the parses it does (for real_trees.py).

``ast``: distinct file names handed to ``compile(..., PyCF_ONLY_AST)`` (``ast.parse`` goes through it);
LibCST: calls to ``libcst.parse_module``, except those parsing bn2gn's own snippets (made in
codemods/inject.py and codemods/freeze_helper.py). Run with ``-j 1``: forked workers would keep their counts
(and so would the analysis' parse workers, which this script does not start: ``parse_pool``).
The counts go to the file named by ``BN2GN_COUNT_OUT`` as JSON, whatever the exit code.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import json
import os
import sys

_compile = builtins.compile
ast_files = set()
counts = {"ast": 0, "cst": 0}


def counting_compile(source, filename, mode, flags=0, *args, **kwargs):
    if flags & ast.PyCF_ONLY_AST:
        ast_files.add(str(filename))
    return _compile(source, filename, mode, flags, *args, **kwargs)


def main() -> None:
    import libcst

    parse = libcst.parse_module

    def counting_parse(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if not caller.endswith(("inject.py", "freeze_helper.py")):
            counts["cst"] += 1
        return parse(*args, **kwargs)

    from bn2gn.decide import parse_pool

    parse_pool.PARALLEL_FILES = 2**62  # every file parsed here, where it is counted
    builtins.compile = counting_compile
    libcst.parse_module = counting_parse

    def dump():
        counts["ast"] = len(ast_files)
        with open(os.environ["BN2GN_COUNT_OUT"], "w") as out:
            json.dump(counts, out)

    atexit.register(dump)
    from bn2gn.cli import main as cli_main

    sys.argv = ["bn2gn", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
