import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def umt_tiny_dir():
    return FIXTURES / "umt_tiny"


@pytest.fixture(scope="session")
def data_formats_dir():
    return FIXTURES / "data_formats"


@pytest.fixture(scope="session")
def umt_keys_dir():
    return FIXTURES / "umt_keys"
