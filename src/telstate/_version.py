"""The one version string of telstate (packaging reads it from here too)."""

__version__ = "0.1.0"
