"""Revisions of the plan store's schema."""
