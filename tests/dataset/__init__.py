"""Tests of the training-set builder and reader."""
