"""Run a snippet of Python in a child process (Theano reads its flags and
libraries load their environment once, at import)."""
import os
import subprocess
import sys


def run_python(code, timeout=600, **env):
    """``python -c code`` with this environment minus ``THEANO_FLAGS``,
    plus ``env``; returns the ``CompletedProcess`` (text output)."""
    full = dict(os.environ)
    full.pop('THEANO_FLAGS', None)
    full.update(env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, env=full, timeout=timeout)
