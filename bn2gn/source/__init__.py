"""The two source engines (``rewrite``, ``patch_trainer``), the codemod interface
(``codemod``), the ordered registry (``registry``), one module per rule under ``rules/`` named by
its code, and the helpers they share under ``support/``.
"""
