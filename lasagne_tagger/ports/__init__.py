"""Checking ports of the 2016 system against this reference: bundles
(``bundle``: the file format and the layer-by-layer comparison), their
export from Theano (``reference``), the PyTorch port (``torch_port``) and
the GPU check (``gpu_check``: ``device=cuda`` against the CPU, through
bundles).

``bundle`` and ``torch_port`` import neither Theano nor Lasagne: a port
runs in an environment that has neither (``make install-port`` builds one,
``.venv-port``).
"""
