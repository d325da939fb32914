"""Theano as this package runs it: compatibility patches, speed defaults,
the BLAS from PyPI, GPU settings, flag checks, parallel and
precompiled-header compiles, the compiled-function cache, the allocator,
timing and progress bars.  ``_theano`` is the one entry point that
prepares Theano; nothing here runs at import of this package.
"""
