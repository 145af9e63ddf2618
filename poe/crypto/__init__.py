"""Signature schemes behind one interface, and provider key files."""
