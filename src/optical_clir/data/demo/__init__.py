"""Generators of the demo data: the Swahili-English and pseudo-English bitexts (see build.py)."""
