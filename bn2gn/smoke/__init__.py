"""Runtime verification (issue 5, seed3 "验证建议"): `bn2gn demo` on the bundled fixtures, `bn2gn verify` on a model.

``recorder`` watches a training run through global forward pre-hooks, ``snapshot`` reads a model's
norm layers and state, ``checks`` turns what was recorded into the report both commands print.
Everything that needs torch imports it inside functions, so importing this package does not.
"""
