"""The decision: the static analysis (facts, graph, roots, the backbone inferred), ``--trace``, the
plan and plan files, and the ``Backbone`` value every engine is handed.

Built on ``core`` and ``model``; knows nothing of the engines that act on the plan.
"""
