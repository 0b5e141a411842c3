"""The embedded Revox simulator (private): use it through :mod:`airflow_provider_revox.testing`."""
