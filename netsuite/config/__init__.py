"""
Configuration: the TOML schema and the command-line options every netsuite
twistd plugin shares.
"""

from .schema import BASE_SECTIONS, ConfigError, Field, defaults, load, parse

__all__ = ["BASE_SECTIONS", "ConfigError", "Field", "defaults", "load", "parse"]
