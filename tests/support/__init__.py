"""Helpers that test modules share (a module here per kind); fixtures stay in conftest.py,
and no test module imports another test module or a conftest."""
