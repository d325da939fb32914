"""The command line, end to end (in process, so Theano's cache is shared)."""
import json

import numpy as np
import pytest
from PIL import Image

from lasagne_tagger import cli
from lasagne_tagger.data import preprocess

import numpy_reference as ref


def _photo(tmp_path, name, seed, size=(320, 260)):
    rng = np.random.RandomState(seed)
    path = tmp_path / name
    Image.fromarray(rng.randint(0, 255, size[::-1] + (3,), np.uint8)).save(
        path)
    return path


def test_imagenet_tags_round_trip_matches_numpy_reference(
        tmp_path, zoo_pickle, capsys):
    weights_path, params, synsets = zoo_pickle
    photos = [_photo(tmp_path, 'a.jpg', 1), _photo(tmp_path, 'b.png', 2)]
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8\xff garbage')
    code = cli.main(['imagenet-tags', str(photos[0]), str(bad),
                     str(photos[1]), '--weights', str(weights_path),
                     '--top', '3', '--json'])
    out, err = capsys.readouterr()
    assert code == 1                         # one bad file, others done
    assert 'broken.jpg' in err and 'error:' in err
    result = json.loads(out)
    assert [r['path'] for r in result['results']] == [str(p) for p in photos]
    assert result['errors'][0]['path'] == str(bad)
    crops = np.stack([preprocess.load_crop(p) for p in photos])
    want = ref.googlenet_forward(
        preprocess.to_network_input(crops, 'float32'), params)['prob']
    for row, r in zip(want, result['results']):
        top = np.argsort(-row)[:3]
        assert [t['synset'] for t in r['top']] == [synsets[i] for i in top]
        assert np.allclose([t['probability'] for t in r['top']], row[top],
                           atol=1e-4)


def test_imagenet_tags_text_output(tmp_path, zoo_pickle, capsys):
    photo = _photo(tmp_path, 'c.jpg', 3)
    assert cli.main(['imagenet-tags', str(photo), '--weights',
                     str(zoo_pickle[0]), '--top', '2']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(photo) and len(lines) == 3
    assert lines[1].strip().endswith(')') is False and '%' in lines[1]


def test_missing_weights_explain_and_fail(tmp_path, capsys):
    photo = _photo(tmp_path, 'd.jpg', 4)
    code = cli.main(['imagenet-tags', str(photo), '--weights',
                     str(tmp_path / 'none.pkl')])
    err = capsys.readouterr().err
    assert code == 2
    assert 'lasagne-tagger fetch-weights' in err and err.count('\n') == 1


def test_bad_flags_are_rejected(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(['imagenet-tags', 'x.jpg', '--top', '0'])
    assert info.value.code == 2
    assert 'must be >= 1' in capsys.readouterr().err


def test_only_bad_files_exit_2(tmp_path, zoo_pickle, capsys):
    d = tmp_path / 'adir'
    d.mkdir()
    assert cli.main(['imagenet-tags', str(d), '--weights',
                     str(zoo_pickle[0])]) == 2
    assert 'is a directory' in capsys.readouterr().err
