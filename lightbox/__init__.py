"""Lightbox: versioned image tables on Lance. The SDK lives here; the command line in ``lightbox.cli``."""

__version__ = "0.1.0"

__all__ = ["__version__"]
