"""Configuration: one commented default file (default.toml), env overrides, validation at load."""

from config.settings import ConfigError, Settings, as_dict, load

__all__ = ["ConfigError", "Settings", "as_dict", "load"]
