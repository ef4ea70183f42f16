"""parity: a cross-vendor GPU microbenchmark harness."""
__version__ = "0.1.0"
