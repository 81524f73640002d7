"""The experiments layer: whole studies built on the library below it (``python -m experiments.pipeline``, the
one-command T-REX experiment with its report; ``python -m experiments.plot``, figures and tables over runs).

Imports run one way, checked by import-linter (``tests/test_layers.py``): procgen_common <- baseline_agent <- trex <-
policies <- experiments. Experiment outputs (``dir=experiments/<name>``) live in subfolders here, outside git.
"""
