"""Apache Airflow provider for Revox, the AI phone-call platform."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
