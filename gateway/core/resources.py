"""Where the shipped schemas live, installed or in a source checkout."""

from functools import cache
from importlib.resources import files
from pathlib import Path


@cache
def schemas_dir() -> Path:
    """The directory holding the XSDs.

    A wheel ships the top-level ``schemas/`` as ``gateway/_schemas``; an
    editable install or a plain checkout reads the top-level folder itself.
    """
    installed = Path(str(files("gateway"))) / "_schemas"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2] / "schemas"
