"""Where the repository and the tests' helper modules lie, for tests in
any subfolder (``from repo import ROOT, TESTS``)."""
import os

#: tests/, where the helper modules (numpy_reference, py2pickle...) are.
TESTS = os.path.dirname(os.path.abspath(__file__))
#: The repository's root.
ROOT = os.path.dirname(TESTS)
