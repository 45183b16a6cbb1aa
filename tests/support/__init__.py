"""Reusable test helpers that start real processes (see :mod:`tests.support.server`)."""
