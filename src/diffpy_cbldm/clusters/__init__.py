"""Building clusters, canonical atom order, Laplacian <-> coordinates."""
