"""Narrow fixes for known bugs in dependencies, each with its upstream reference."""
