"""Almanac: a catalog of specialized language models and an offline batch inference cache."""

__version__ = "0.1.0"
