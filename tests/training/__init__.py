"""Tests of the three-stage CbLDM training."""
