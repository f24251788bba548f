"""vitcli: see what a Vision Transformer does to an image, one idea at a time."""

__version__ = "0.1.0"
