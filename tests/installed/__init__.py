"""The installed wheel, run as a user runs it (see conftest.py)."""
