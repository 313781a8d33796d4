"""Removing history for good: forget keys (listed or matched), the object rewrite, expiry."""
