"""Dataset readers (class folders, ACS), ACS extraction and taxonomies."""
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from lasagne_tagger.data import datasets
from lasagne_tagger.data.datasets import (ACS_CLASSES, Item, check_taxonomy,
                                     derive_acs_taxonomy, extract_acs,
                                     list_splits, load_taxonomy,
                                     parse_acs_labels, read_acs,
                                     read_dataset, read_folder_dataset,
                                     taxonomy_tags)
from lasagne_tagger.errors import TaggerError
from repo import ROOT

CLOTHING_SMALL = (Path(ROOT).resolve().parent
                  / 'shared/data/clothing-small')


# -- folder datasets ----------------------------------------------------------

def test_folder_reader(ds_folder):
    ds = read_folder_dataset(ds_folder)
    assert ds.classes == ['bag', 'cap', 'coat']
    assert list_splits(ds) == ds.splits == ['train', 'validation']
    assert ds.counts() == {'train': 9, 'validation': 3}
    assert ds.kind == 'folder' and ds.name == 'tiny'
    assert ds.root == str(ds_folder)
    assert all(isinstance(item, Item) for item in ds.items)
    rel = [(ds.relpath(i), i.label, i.split) for i in ds.items]
    assert rel[:4] == [('train/bag/img0.jpg', 0, 'train'),
                       ('train/bag/img1.png', 0, 'train'),
                       ('train/bag/img2.jpg', 0, 'train'),
                       ('train/cap/img0.jpg', 1, 'train')]
    assert rel[-1] == ('validation/coat/img0.jpg', 2, 'validation')
    assert all(os.path.isabs(i.path) and os.path.isfile(i.path)
               for i in ds.items)
    # no hidden files, no non-images
    assert not any('.DS_Store' in i.path or i.path.endswith('.txt')
                   for i in ds.items)
    assert [i.split for i in ds.split('validation')] == ['validation'] * 3
    with pytest.raises(TaggerError, match="no split 'test'"):
        ds.split('test')
    # deterministic
    again = read_folder_dataset(str(ds_folder))
    assert again.items == ds.items
    assert datasets.dataset_fingerprint(again) == \
        datasets.dataset_fingerprint(ds)


def test_folder_reader_empty_class_folder(ds_folder):
    for f in (ds_folder / 'validation' / 'cap').iterdir():
        if f.suffix in ('.jpg', '.png'):
            f.unlink()
    with pytest.raises(TaggerError) as err:
        read_folder_dataset(ds_folder)
    assert 'empty class folder' in str(err.value)
    assert str(ds_folder / 'validation' / 'cap') in str(err.value)


def test_folder_reader_class_sets_must_match(ds_folder):
    shutil.copytree(ds_folder / 'validation' / 'cap',
                    ds_folder / 'validation' / 'scarf')
    with pytest.raises(TaggerError) as err:
        read_folder_dataset(ds_folder)
    msg = str(err.value)
    assert "split 'validation'" in msg and "'scarf'" in msg
    assert "split 'train' lacks" in msg
    shutil.rmtree(ds_folder / 'validation' / 'scarf')
    shutil.rmtree(ds_folder / 'validation' / 'bag')
    with pytest.raises(TaggerError, match=r"validation' lacks class "
                                          r"folder\(s\) 'bag'"):
        read_folder_dataset(ds_folder)


def test_folder_reader_bad_roots(tmp_path):
    with pytest.raises(TaggerError, match='dataset folder not found'):
        read_folder_dataset(tmp_path / 'nope')
    (tmp_path / 'flat').mkdir()
    (tmp_path / 'flat' / 'a.jpg').write_bytes(b'x')
    with pytest.raises(TaggerError, match='no split folders'):
        read_folder_dataset(tmp_path / 'flat')
    (tmp_path / 'flat' / 'train').mkdir()
    with pytest.raises(TaggerError, match="split 'train' has no class"):
        read_folder_dataset(tmp_path / 'flat')


@pytest.mark.skipif(not CLOTHING_SMALL.is_dir(),
                    reason='shared clothing-small data not present')
def test_clothing_small_smoke():
    ds = read_folder_dataset(CLOTHING_SMALL)
    assert ds.counts() == {'train': 3068, 'validation': 341}
    assert ds.classes == ['dress', 'hat', 'longsleeve', 'outwear', 'pants',
                          'shirt', 'shoes', 'shorts', 'skirt', 't-shirt']
    assert read_dataset(CLOTHING_SMALL).items == ds.items
    check_taxonomy(load_taxonomy('clothing-small'), ds.classes)


# -- ACS ----------------------------------------------------------------------

def test_acs_reader(tmp_path, ds_build_acs, ds_acs_lines):
    train, test = ds_acs_lines
    root = ds_build_acs(tmp_path, train, test)
    for where in (root, tmp_path):          # fashion-data/ or its parent
        ds = read_acs(where)
        assert ds.kind == 'acs' and ds.classes == list(ACS_CLASSES)
        assert ds.root == str(root / 'images')
        assert ds.splits == ['train', 'test']
        assert [ds.relpath(i) for i in ds.split('train')] == \
            [l + '.jpg' for l in train]
        assert [i.label for i in ds.items] == [0, 0, 11, 9, 12, 11, 0]
        assert ds.counts() == {'train': 5, 'test': 2}
    assert read_dataset(tmp_path).items == ds.items


def test_acs_labels_parsing(ds_acs_labels_text):
    assert ds_acs_labels_text.count('\n') == 17          # braces + 15 lines
    assert parse_acs_labels(ds_acs_labels_text) == list(ACS_CLASSES)
    # JSON, one-line dicts and blank lines are fine too
    assert parse_acs_labels('{"0": "a", "1": "b"}') == ['a', 'b']
    assert parse_acs_labels("{1: 'b', 0: 'a / c'}\n\n") == ['a / c', 'b']


@pytest.mark.parametrize('text, message', [
    ("{\n0:  'blouses',\n1  'cloak',\n}", "line 3: expected"),
    ("{\n0: 'a',\n0: 'b'\n}", 'line 3: class id 0 given twice'),
    ("0: 'a'\n2: 'c'\n", 'line 2: class id 2 out of range'),
    ("{\n}\n", 'no class entries'),
    ("0: ''", 'empty name'),
])
def test_acs_labels_errors(text, message):
    with pytest.raises(TaggerError, match=message) as err:
        parse_acs_labels(text, 'x/labels.json')
    assert str(err.value).startswith('x/labels.json: ')


def test_acs_malformed_labels_file(tmp_path, ds_build_acs, ds_acs_lines,
                                   ds_acs_labels_text):
    bad = ds_acs_labels_text.replace("5:  'polo shirt / sport shirt',",
                                     "5:  polo shirt,")
    root = ds_build_acs(tmp_path, *ds_acs_lines, labels=bad)
    with pytest.raises(TaggerError) as err:
        read_acs(root)
    assert str(root / 'labels.json') in str(err.value)
    assert 'line 7' in str(err.value) and 'polo shirt' in str(err.value)


def test_acs_missing_image(tmp_path, ds_build_acs, ds_acs_lines):
    train, test = ds_acs_lines
    root = ds_build_acs(tmp_path, train, test,
                        images=train + test[:1])     # test line 2 missing
    with pytest.raises(TaggerError) as err:
        read_acs(root)
    msg = str(err.value)
    assert msg.startswith(str(root / 'test.txt') + ': line 2 ')
    assert test[1] in msg
    ds = read_acs(root, missing='skip')
    assert ds.counts() == {'train': 5, 'test': 1}
    assert len(ds.skipped) == 1 and 'test.txt line 2' in ds.skipped[0]


@pytest.mark.parametrize('line, message', [
    ('15/n1/n1_1', 'line 2: class id 15 out of range'),
    ('x/n1/n1_1', 'line 2: the first path component must be the class id'),
    ('justaname', 'line 2: expected a path relative to images/'),
    ('0/../../etc/passwd', 'line 2: expected a path relative'),
])
def test_acs_bad_split_lines(tmp_path, ds_build_acs, line, message):
    root = ds_build_acs(tmp_path, ['0/n1/n1_0'], ['0/n1/n1_1'],
                        images=['0/n1/n1_0', '0/n1/n1_1'])
    (root / 'train.txt').write_text('0/n1/n1_0\n%s\n' % line)
    with pytest.raises(TaggerError, match=message) as err:
        read_acs(root)
    assert str(root / 'train.txt') in str(err.value)


def test_acs_missing_files(tmp_path, ds_build_acs, ds_acs_lines):
    root = ds_build_acs(tmp_path, *ds_acs_lines)
    (root / 'test.txt').unlink()
    with pytest.raises(TaggerError, match='missing ACS split file') as err:
        read_acs(root)
    assert 'test.txt' in str(err.value)
    (root / 'labels.json').unlink()
    with pytest.raises(TaggerError, match='missing ACS labels file'):
        read_acs(root)
    with pytest.raises(TaggerError, match='expected the extracted ACS'):
        read_acs(tmp_path / 'fashion-data' / 'images')
    with pytest.raises(TaggerError, match="missing must be"):
        read_acs(root, missing='ignore')


def test_acs_duplicates_and_extensions(tmp_path, ds_build_acs):
    root = ds_build_acs(tmp_path, ['0/n1/a', '0/n1/a', '3/n2/b.jpg'],
                        ['3/n2/b'], images=['0/n1/a', '3/n2/b'])
    ds = read_acs(root)
    assert [ds.relpath(i) for i in ds.items] == ['0/n1/a.jpg', '3/n2/b.jpg',
                                                 '3/n2/b.jpg']
    assert len(ds.skipped) == 1 and 'duplicate of line 1' in ds.skipped[0]


def _make_tar(path, root, extra=None):
    with tarfile.open(path, 'w:bz2') as tar:
        if root is not None:
            tar.add(str(root), arcname='fashion-data')
        for info, data in extra or []:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_extract_acs_round_trip(tmp_path, ds_build_acs, ds_acs_lines,
                                capsys):
    src = ds_build_acs(tmp_path / 'src', *ds_acs_lines)
    archive = _make_tar(tmp_path / 'fashion-data.tar.bz2', src)
    dest = tmp_path / 'data'
    out = extract_acs(archive, dest, progress=True)
    assert out == str(dest / 'fashion-data')
    assert sorted(os.listdir(dest)) == ['fashion-data']    # no temp left
    assert 'extracting fashion-data.tar.bz2' in capsys.readouterr().err
    ds = read_acs(dest)
    want = read_acs(src)
    assert [ds.relpath(i) for i in ds.items] == \
        [want.relpath(i) for i in want.items]
    for a, b in zip(ds.items, want.items):
        assert open(a.path, 'rb').read() == open(b.path, 'rb').read()
    # a second call finds the finished extraction and returns it
    assert extract_acs(archive, dest, progress=False) == out


def _member(name, type_=tarfile.REGTYPE, linkname='', data=b''):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    return info, (data if type_ == tarfile.REGTYPE else None)


@pytest.mark.parametrize('member, message', [
    (_member('/etc/evil', data=b'x'), 'absolute path'),
    (_member('fashion-data/../../evil', data=b'x'), 'contains ".."'),
    (_member('fashion-data/link', tarfile.SYMTYPE, '../../outside'),
     'points outside'),
    (_member('fashion-data/abs', tarfile.SYMTYPE, '/etc/passwd'),
     'absolute path'),
    (_member('fashion-data/hard', tarfile.LNKTYPE, '../x'), 'points outside'),
    (_member('fashion-data/dev', tarfile.CHRTYPE), 'device'),
])
def test_extract_acs_rejects_unsafe_members(tmp_path, member, message):
    archive = _make_tar(tmp_path / 'fashion-data.tar.bz2', None, extra=[
        _member('fashion-data/train.txt', data=b'0/a/b\n'), member])
    dest = tmp_path / 'dest'
    with pytest.raises(TaggerError, match=message) as err:
        extract_acs(archive, dest, progress=False)
    assert str(archive) in str(err.value)
    assert os.listdir(dest) == []            # temp folder removed
    assert not (tmp_path / 'evil').exists()


def test_extract_acs_bad_archives(tmp_path):
    with pytest.raises(TaggerError, match='archive not found'):
        extract_acs(tmp_path / 'nope.tar.bz2', tmp_path / 'd')
    junk = tmp_path / 'junk.tar.bz2'
    junk.write_bytes(b'this is not a tar file at all' * 10)
    with pytest.raises(TaggerError, match='not a readable tar') as err:
        extract_acs(junk, tmp_path / 'd', progress=False)
    assert str(junk) in str(err.value)
    assert os.listdir(tmp_path / 'd') == []


# -- taxonomies ---------------------------------------------------------------

def test_acs_taxonomy_file_equals_derivation():
    packaged = load_taxonomy('acs')
    derived = derive_acs_taxonomy(ACS_CLASSES)
    assert list(packaged.items()) == list(derived.items())
    assert packaged['jersey / T-shirt / tee shirt'] == \
        ['jersey', 'T-shirt', 'tee shirt']
    assert packaged['undergarment / upper body'] == \
        ['undergarment', 'upper body']
    assert packaged['suit / suit of clothes'] == ['suit', 'suit of clothes']
    tags = taxonomy_tags(packaged)
    assert len(tags) == len(set(tags)) == 21
    assert tags[:3] == ['blouses', 'cloak', 'coat']
    for tag in ('jersey', 'T-shirt', 'upper body', 'suit of clothes'):
        assert tag in tags
    from lasagne_tagger.resources import resource_path
    path = Path(resource_path('taxonomy_acs.json'))
    assert json.loads(path.read_text())['name'] == 'acs'
    assert load_taxonomy(str(path)) == packaged


def test_clothing_small_taxonomy():
    tax = load_taxonomy('clothing-small')
    classes = ['dress', 'hat', 'longsleeve', 'outwear', 'pants', 'shirt',
               'shoes', 'shorts', 'skirt', 't-shirt']
    assert list(tax) == classes
    check_taxonomy(tax, classes)
    assert tax['t-shirt'] == ['T-shirt', 'short sleeves', 'upper body']
    tags = taxonomy_tags(tax, classes)
    assert len(tags) == len(set(tags))
    for shared in ('upper body', 'lower body', 'footwear', 'headwear'):
        assert shared in tags
    assert sum('upper body' in t for t in tax.values()) >= 3
    assert datasets.class_tags(tax, ['hat', 'shoes']) == [
        ['hat', 'headwear'], ['shoes', 'footwear']]


def test_taxonomy_tags_order_follows_classes():
    tax = {'b': ['x', 'shared'], 'a': ['y', 'shared']}
    assert taxonomy_tags(tax) == ['x', 'shared', 'y']
    assert taxonomy_tags(tax, ['a', 'b']) == ['y', 'shared', 'x']


@pytest.mark.parametrize('taxonomy, message', [
    ({'a': ['x'], 'b': []}, "class 'b' has an empty tag list"),
    ({'a': ['x', 'y', 'x']}, "class 'a' lists tag 'x' twice"),
    ({'a': ['x', 3]}, "class 'a': tag 3 is not a string"),
    ({'a': 'x'}, "class 'a': tags must be a list"),
    ({'a': [' x']}, "surrounding blanks"),
    ({'a': ['x, y']}, 'contains a comma'),
    ({}, 'taxonomy has no classes'),
])
def test_check_taxonomy_errors(taxonomy, message):
    with pytest.raises(TaggerError, match=message):
        check_taxonomy(taxonomy)


def test_check_taxonomy_missing_class_and_files(tmp_path):
    with pytest.raises(TaggerError, match="no tags for class\\(es\\) 'c'"):
        check_taxonomy({'a': ['x'], 'b': ['y']}, ['a', 'c'])
    bad = tmp_path / 'tax.json'
    bad.write_text('{"classes": {"a": []}}')
    with pytest.raises(TaggerError, match="class 'a' has an empty") as err:
        load_taxonomy(bad)
    assert str(bad) in str(err.value)
    bad.write_text('{"classes": ')
    with pytest.raises(TaggerError, match='not valid JSON'):
        load_taxonomy(bad)
    bare = tmp_path / 'bare.json'
    bare.write_text('{"a": ["x"], "b": ["x", "y"]}')
    assert load_taxonomy(bare) == {'a': ['x'], 'b': ['x', 'y']}
    with pytest.raises(TaggerError, match="no packaged taxonomy 'nope'"):
        load_taxonomy('nope')
    assert datasets.taxonomy_names() == ['acs', 'clothing-small']
