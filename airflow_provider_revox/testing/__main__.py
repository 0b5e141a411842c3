"""``python -m airflow_provider_revox.testing``: the Revox simulator from the command line."""

from __future__ import annotations

from airflow_provider_revox._simulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
