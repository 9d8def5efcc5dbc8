"""The optimizer pieces: each a factory returning a ``GradientTransformation``."""
