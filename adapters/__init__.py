"""Adapters that mount grayrelease into a host (Flask, Nacos, Apollo)."""
