"""Ports of the 2016 system to modern frameworks, checked against the
Theano reference through bundles (:mod:`lasagne_tagger.ports.bundle`).

Nothing here imports Theano or Lasagne: a port runs in an environment that
has neither (``make install-port`` builds one, ``.venv-port``).
"""
