"""Relance: B2B nurturing and follow-up sequences, written in YAML, run on Prefect."""

__version__ = "0.1.0"
