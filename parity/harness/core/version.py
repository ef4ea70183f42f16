"""parity's version: below everything that records it (provenance) and re-exported by the package's face."""
__version__ = "0.1.0"  # as pyproject.toml's [project] version
