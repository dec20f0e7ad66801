"""Build hook: setuptools reads everything from pyproject.toml except the cffi module."""

from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
