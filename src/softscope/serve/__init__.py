"""The live explorer (`softscope serve`): a web server over run folders and the same engines the CLI uses."""

from .config import ServeConfig
from .app import create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
