# Fresh-machine entry points.  `make test` and `make demo` create .venv with
# Python 3.11 and install the pinned stack (requirements.txt) on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The PyTorch port runs in its own environment without Theano or Lasagne
# (the real use case: a modern port checked against the reference through
# bundle files).  It sees this source tree through a .pth file.
PORT_VENV ?= .venv-port
PORT_PY := $(PORT_VENV)/bin/python
PORT_STAMP := $(PORT_VENV)/.installed
PORT_DIR ?= runs/port-check
# Where the torch CPU wheel lies (used when the folder exists).
PORT_WHEELS ?= /opt/wheels
# The reference runs in float32, the precision a port is checked at.
PORT_FLAGS ?= floatX=float32

.PHONY: test demo install install-port port-check gpu-pack gpu-check clean

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# torch==2.13.0 exactly: pip takes the CPU wheel from the local wheel folder;
# never a range, which would pull a multi-GB CUDA build.
$(PORT_STAMP): setup.py requirements.txt
	test -x $(PORT_PY) || $(PYTHON) -m venv $(PORT_VENV)
	$(PORT_PY) -m pip install -q -c requirements.txt \
	    $(if $(wildcard $(PORT_WHEELS)),--find-links $(PORT_WHEELS)) \
	    numpy h5py 'torch==2.13.0'
	$(PORT_PY) -c 'import os, site; open(os.path.join(site.getsitepackages()[0], "lasagne_tagger_src.pth"), "w").write(os.getcwd() + "\n")'
	$(PORT_PY) -c 'import lasagne_tagger.ports.torch_port'
	touch $(PORT_STAMP)

install-port: $(PORT_STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/lasagne-tagger demo

# Theano reference (full 224 px GoogLeNet, seeded random weights, a small
# tagger trained on its features) -> PyTorch port -> layer-by-layer compare.
port-check: $(STAMP) $(PORT_STAMP)
	rm -rf $(PORT_DIR) && mkdir -p $(PORT_DIR)
	THEANO_FLAGS="$(PORT_FLAGS)$${THEANO_FLAGS:+,$$THEANO_FLAGS}" \
	    $(VENV)/bin/lasagne-tagger reference export --seed 0 \
	    --train-tagger $(PORT_DIR)/tagger --out $(PORT_DIR)/reference.h5
	$(PORT_PY) -m lasagne_tagger.ports.torch_port $(PORT_DIR)/reference.h5 \
	    --out $(PORT_DIR)/torch.h5
	$(VENV)/bin/lasagne-tagger reference compare $(PORT_DIR)/reference.h5 \
	    $(PORT_DIR)/torch.h5

# The GPU check (README, "On a GPU"): gpu-pack here, with network, packs
# CPython 3.11, wheels and the libgpuarray sources into .gpu-carry;
# gpu-check, on a GPU machine without network, builds libgpuarray and pygpu
# from them and compares device=cuda with the CPU (gpu/check.sh).
gpu-pack:
	PYTHON=$(PYTHON) gpu/pack.sh

gpu-check:
	gpu/check.sh

clean:
	rm -rf $(VENV) $(PORT_VENV) build *.egg-info
