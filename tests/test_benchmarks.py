"""benchmarks/run.py's child processes get the measurement's arguments,
with the layer options added (a child that lost them failed every
network measurement)."""
import importlib.util
import os

import pytest
from repo import ROOT


def _run_module():
    spec = importlib.util.spec_from_file_location(
        'benchmarks_run', os.path.join(ROOT, 'benchmarks', 'run.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_child_gets_its_arguments_and_the_layer_options(tmp_path):
    # a stand-in for run.py in the child: it echoes what it was given
    (tmp_path / 'run.py').write_text(
        'def layer_options(which):\n'
        '    return {"chosen": which}\n'
        'def child_echo(args):\n'
        '    return {"args": args}\n')
    env = dict(os.environ, BENCHMARK_LAYERS='lasagne')
    res = _run_module()._run_child('echo', {'repeats': 3, 'photos': 'p'},
                                   env, here=str(tmp_path))
    assert res['args'] == {'repeats': 3, 'photos': 'p',
                           'layer_options': {'chosen': 'lasagne'}}
    assert res['child_wall_s'] > 0 and res['peak_rss_mb'] > 0


def test_layer_options_name_the_variants():
    run = _run_module()
    assert run.layer_options('ours') == {}
    assert run.layer_options('corrmm') == {'conv': {'impl': 'graph'}}
    with pytest.raises(SystemExit, match="BENCHMARK_LAYERS must be one of "
                                         "ours, lasagne.*got 'nope'"):
        run.layer_options('nope')
