"""Revisions of the sql backend's schema."""
