"""Configuration: one commented default file (default.toml), env overrides, validation at load."""

from config.settings import ConfigError, Settings, as_dict, load, public_dict

__all__ = ["ConfigError", "Settings", "as_dict", "load", "public_dict"]
