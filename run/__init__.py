"""Thin command lines over lib/."""
