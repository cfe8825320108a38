"""One module per DVC stage (`python -m stages.<name>`), the params.yaml boundary (`params/`) and the stage command line (`cli.py`)."""
