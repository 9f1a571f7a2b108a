"""Validation of repairs: numeric comparison, execution providers, and what TensorRT built."""
