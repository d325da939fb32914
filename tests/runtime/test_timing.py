"""Per-stage timing: wall, compile (functions compiled or loaded from the
function cache) and the rest, reported by function_cache.function."""
import theano.tensor as T

from lasagne_tagger.runtime import function_cache
from lasagne_tagger.runtime.timing import StageTimer, record_function


def test_stages_count_the_functions_made_inside_them(tmp_path, monkeypatch):
    monkeypatch.setenv('LASAGNE_TAGGER_NO_FUNCTION_CACHE', '1')
    timer = StageTimer()
    x = T.vector('x')
    with timer.stage('first'):
        function_cache.function([x], x * 2 + 1)
        function_cache.function([x], x - 3)
    record_function(100.0, False)      # outside any stage: not counted
    with timer.stage('second') as row:
        record_function(1.5, True)
        row['note'] = 'kept'
    first, second = timer.rows
    assert (first['stage'], first['compiled'], first['loaded']) == \
        ('first', 2, 0)
    assert 0 < first['compile_s'] <= first['wall_s'] + 1e-6
    assert abs(first['run_s'] - (first['wall_s'] - first['compile_s'])) \
        < 1e-9
    assert (second['compiled'], second['loaded'], second['compile_s'],
            second['note']) == (0, 1, 1.5, 'kept')
    assert second['run_s'] == 0.0     # wall < the recorded 1.5 s: clipped
    lines = timer.table().splitlines()
    assert lines[0].split()[:2] == ['stage', 'wall']
    assert lines[1].startswith('first') and '2 compiled, 0 cached' in lines[1]
    assert lines[-1].startswith('total') and \
        '2 compiled, 1 cached' in lines[-1]
    assert [r['stage'] for r in timer.as_json()] == ['first', 'second']
