"""mathforge: verified math-reasoning SFT datasets."""

__version__ = "0.1.0"
