"""lumbar: lumbar-spine MRI toolkit for intervertebral disc state classification."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lumbar")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
