"""``python -m airflow_provider_revox.testing``: the Revox simulator from the command line."""

from __future__ import annotations

import sys

from airflow_provider_revox.testing import _simulator_module


def _main() -> int:
    try:
        cli = _simulator_module("cli")
    except ImportError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    status: int = cli.main()
    return status


if __name__ == "__main__":
    raise SystemExit(_main())
