"""OPTICAL: cross-lingual retrieval for low-resource languages by optimal transport distillation.

The package holds the logic of the Snakemake workflow: data readers and validation,
encoders, losses, training, retrieval, translation and evaluation.
"""

__version__ = "0.1.0"
