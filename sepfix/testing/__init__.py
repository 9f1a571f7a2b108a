"""Test support: builders of small clean models and mangles that reproduce exporter damage.

Kept inside the package (not under tests/) so that scripts/make_samples.py and other projects'
tests can build the same models sepfix is tested against.
"""
