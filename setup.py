"""Build hook for the native kernel; all package metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
