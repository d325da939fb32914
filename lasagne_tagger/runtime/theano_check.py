"""Import Theano as the package runs it, turning a configuration it cannot
honour into one error line before any work starts.

:func:`import_theano` is what every command that compiles calls first:

- a bad value in ``THEANO_FLAGS`` or ``.theanorc`` (``floatX=banana``,
  ``mode=NOPE``, a ``compiledir`` that cannot be created or written) is
  ``error: THEANO_FLAGS floatX=banana: ...``, not Theano's traceback;
- ``floatX=float16``: the package's C ops compute in float32 or float64
  only;
- ``device=cuda*`` that Theano cannot honour (no pygpu, no GPU): Theano 1.0.5
  logs an error and quietly falls back to the CPU; here it is an error;
- the BLAS is checked (:func:`lasagne_tagger.runtime.blas.ensure_usable`).

Nothing here runs on import.
"""
import os
import re
import sys

from ..errors import TaggerError

__all__ = ['import_theano', 'requested_device', 'SUPPORTED_FLOATX']

SUPPORTED_FLOATX = ('float32', 'float64')


def requested_device(environ=None):
    """The ``device`` the user asked for (THEANO_FLAGS or .theanorc), or
    None."""
    from .compat import user_theano_flag
    return user_theano_flag('device', environ)


def _flag_text(name):
    from .compat import user_theano_flag
    value = user_theano_flag(name)
    where = 'THEANO_FLAGS' if name in os.environ.get('THEANO_FLAGS', '') \
        else '.theanorc'
    return '%s %s=%s' % (where, name, value)


def _config_error(exc):
    """A TaggerError for an error Theano raised while reading its flags."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    m = re.search(r'configuration variable "([\w.]+)"', text)
    if m:
        return TaggerError('%s: %s' % (_flag_text(m.group(1)), text))
    m = re.search(r"Unable to create the compiledir directory '(.*)'", text)
    if m:
        return TaggerError('Theano cannot create its compile folder here '
                           '(check the permissions, or set compiledir or '
                           'base_compiledir in THEANO_FLAGS)', m.group(1))
    if text.startswith('Expected one of those string'):
        return TaggerError('%s: not a Theano mode (%s)'
                           % (_flag_text('mode'), text))
    return TaggerError('Theano cannot start with these flags (%s: %s)'
                       % (type(exc).__name__, text))


def import_theano():
    """Import and check Theano; returns the module.

    Raises
    ------
    TaggerError
        The configuration is invalid, asks for a precision or device that
        cannot be had, or names a BLAS that cannot be linked.
    """
    from . import _theano  # noqa: F401 (prepares Theano)
    try:
        import theano
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise _config_error(exc) from None
    except OSError as exc:
        from ..atomic import describe_os_error
        raise TaggerError('Theano cannot use its compile folder (%s)'
                          % describe_os_error(exc),
                          getattr(exc, 'filename', None)) from None
    except Exception as exc:   # Theano's own configuration errors
        if type(exc).__module__.startswith('theano'):
            raise _config_error(exc) from None
        raise
    config = theano.config
    if config.floatX not in SUPPORTED_FLOATX:
        raise TaggerError('%s: not supported: the package\'s C ops and '
                          'checkpoints are float32 or float64'
                          % _flag_text('floatX'))
    _check_device(theano)
    _check_mode(theano)
    _check_compiledir(config.compiledir)
    from . import blas
    blas.ensure_usable(config.blas.ldflags)
    return theano


def _check_device(theano):
    asked = (requested_device() or '').strip()
    if not asked.startswith(('cuda', 'opencl', 'gpu')):
        return
    active = False
    try:
        from theano import gpuarray
        active = bool(getattr(gpuarray, 'pygpu_activated', False))
    except Exception:
        pass
    if not active or not theano.config.device.startswith(asked[:4]):
        raise TaggerError(
            '%s: no usable GPU: Theano could not initialise it (is pygpu '
            'installed, and is a CUDA device visible?) and would run on the '
            'CPU instead; use device=cpu, or see the README\'s GPU section'
            % _flag_text('device'))


def _check_mode(theano):
    try:
        theano.compile.mode.get_mode(theano.config.mode)
    except Exception as exc:
        raise TaggerError('%s: %s' % (_flag_text('mode'), str(exc).splitlines(
        )[0] if str(exc) else type(exc).__name__)) from None


def _check_compiledir(path):
    if not os.access(path, os.W_OK | os.X_OK):
        raise TaggerError('Theano\'s compile folder is not writable (set '
                          'compiledir or base_compiledir in THEANO_FLAGS)',
                          path)


if __name__ == '__main__':          # python -m lasagne_tagger.runtime.theano_check
    try:
        import_theano()
    except TaggerError as exc:
        print('error: %s' % exc, file=sys.stderr)
        sys.exit(2)
    print('Theano configuration usable')
