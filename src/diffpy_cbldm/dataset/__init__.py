"""Building and reading training sets of (structure, PDF) pairs."""
