"""Orchestration: Prefect flows over the DVC DAG, and the `ldm` command line."""
