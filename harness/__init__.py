"""Test image classifiers with explanations as test oracles.

YAML test cases name an image, its annotated object and the expected class; the
harness generates variants (object removed, background removed, sticker added), runs
the classifier and an LRP explainer over them in batches and turns the relevance
distribution into pytest pass/fail verdicts.
"""

__version__ = "0.1.0"
