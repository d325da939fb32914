"""Packaging for lasagne_tagger (Python 3.11; 3.10 for the conda GPU
environment: see compat.py and environment.yml)."""
from setuptools import find_packages, setup

# Runtime dependencies, pinned: Theano 1.0.5 needs NumPy < 1.24, Lasagne 0.1
# is the only Lasagne release on PyPI.  environment.yml must name each of
# these at its Python 3.10 version (tests/test_packaging.py checks it).
PY311 = "; python_version >= '3.11'"
PY310 = "; python_version < '3.11'"
RUNTIME = [
    'Theano==1.0.5',
    'Lasagne==0.1',
    'numpy==1.23.5',
    # the BLAS every C module links (lasagne_tagger/runtime/blas.py says why)
    'scipy-openblas32==0.3.34.481.3',
    'scipy==1.15.3' + PY311,
    # note: conda-forge's newest scipy for Python 3.10 (environment.yml)
    'scipy==1.15.2' + PY310,
    'pillow==13.0.0' + PY311,
    'pillow==12.0.0' + PY310,    # Pillow 13 needs Python >= 3.11
    'h5py==3.16.0',
    'matplotlib==3.9.4',
    'contourpy==1.3.0',   # matplotlib's; newer ones require NumPy >= 1.25
    'protobuf==7.36.2',   # reads Caffe models (lasagne_tagger/model/caffemodel.py)
    'tqdm==4.70.1',       # progress bars (lasagne_tagger/runtime/progress.py)
]

setup(
    name='lasagne_tagger',
    version='0.1.0',
    description='Theano + Lasagne reproduction of a 2016 fashion tagger: '
                'GoogLeNet fine-tuned on ACS feeding a Show-and-Tell LSTM.',
    packages=find_packages(include=['lasagne_tagger', 'lasagne_tagger.*']),
    # the data files, and the C ops' sources (read when an op compiles)
    package_data={'lasagne_tagger.resources': ['*.txt', '*.json', '*.h'],
                  'lasagne_tagger.ops': ['*.c', '*.h']},
    python_requires='>=3.10,<3.12',
    install_requires=RUNTIME,
    extras_require={
        'test': ['pytest==9.2.0' + PY311, 'pytest==9.1.1' + PY310],
        # CPU wheel; never let pip pick a CUDA build by range.  torch 2.13
        # requires setuptools >= 77.0.3; Lasagne 0.1 imports pkg_resources,
        # which setuptools 81 removed: the bound keeps both importable when
        # the port shares an environment with Theano (`make install-port`
        # builds a separate one without Theano instead).
        'port': ['torch==2.13.0', 'setuptools>=77.0.3,<81'],
        # fetch-weights through the S3 API, the requester paying
        's3': ['boto3==1.44.5'],
    },
    entry_points={'console_scripts': [
        'lasagne-tagger = lasagne_tagger.cli:main']},
)
