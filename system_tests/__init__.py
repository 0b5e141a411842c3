"""System test: the provider inside a real Airflow deployment (``make system-test``)."""
