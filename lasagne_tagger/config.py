"""One configuration object per training stage, saved with each checkpoint.

Configs are dataclasses.  :func:`load_config` reads a JSON file (optional)
and applies ``key=value`` overrides from the command line, converting each
value to the field's type; unknown keys and bad values are errors naming
the key.
"""
import dataclasses
import json
import math
import os

from .errors import TaggerError

__all__ = ['load_config', 'config_to_dict', 'config_from_dict', 'check_finite']


def config_to_dict(config):
    return dataclasses.asdict(config)


def config_from_dict(cls, data, source='config'):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TaggerError('%s: unknown setting(s) %s; known: %s'
                          % (source, ', '.join(unknown),
                             ', '.join(sorted(names))))
    return cls(**data)


def check_finite(config):
    """Raise TaggerError for a float setting that is NaN or infinite (a
    comparison such as ``learning_rate <= 0`` lets NaN through)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise TaggerError('%s must be a finite number, got %r'
                              % (field.name, value))


def _convert(field, text):
    kind = field.type if isinstance(field.type, str) else \
        getattr(field.type, '__name__', str(field.type))
    if 'bool' in kind:
        if text.lower() in ('1', 'true', 'yes', 'on'):
            return True
        if text.lower() in ('0', 'false', 'no', 'off'):
            return False
        raise ValueError('expected true/false')
    if 'int' in kind and 'float' not in kind:
        return int(text)
    if 'float' in kind:
        return float(text)
    if 'Optional' in kind or 'None' in kind:
        return None if text.lower() in ('', 'none', 'null') else text
    return text


def load_config(cls, path=None, overrides=()):
    """Build a ``cls`` config from a JSON file and ``key=value`` strings."""
    data = {}
    if path:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise TaggerError('cannot read config (%s)' % exc, path) from None
        if not isinstance(data, dict):
            raise TaggerError('config must be a JSON object', path)
        # Comments are allowed as "_comment" / "_note" keys.
        data = {k: v for k, v in data.items() if not k.startswith('_')}
    config = config_from_dict(cls, data, source=os.fspath(path or 'config'))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    changes = {}
    for item in overrides:
        key, sep, value = item.partition('=')
        key = key.strip().replace('-', '_')
        if not sep or key not in fields:
            raise TaggerError('bad override %r: expected KEY=VALUE with KEY '
                              'one of %s' % (item, ', '.join(sorted(fields))))
        try:
            changes[key] = _convert(fields[key], value.strip())
        except ValueError as exc:
            raise TaggerError('bad value for %s: %r (%s)'
                              % (key, value, exc)) from None
    config = dataclasses.replace(config, **changes)
    check_finite(config)
    validate = getattr(config, 'validate', None)
    if validate is not None:
        validate()
    return config
