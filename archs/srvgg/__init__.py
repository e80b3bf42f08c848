"""One architecture family: its torch module (`module.py`) and what the project knows of it (`family.py`)."""
