"""What the rule modules share: the ``ast`` facts of train scripts, the recognisers, injected code,
helper names and the one-traversal combinator.
"""
