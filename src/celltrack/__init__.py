"""celltrack: hands-off segmentation and tracking of fluorescent cell nuclei.

Hierarchical correlation filters over CNN features (Ma et al. 2015) used as the appearance
term of a global linear-assignment linker with divisions, gap closing and CTC output.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
