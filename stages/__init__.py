"""One module per DVC stage: `python -m stages.<name>`; each has `run(params, paths)` and `main()`."""
