import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: skipped (with the reason) on machines without one, so
    ``pytest -m cuda`` runs exactly the GPU subset where there is one (docs/testing.md)."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA (run `pytest -m cuda` on a GPU machine; see docs/testing.md)")
        for item in cuda_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def umt_tiny_dir():
    return FIXTURES / "umt_tiny"


@pytest.fixture(scope="session")
def data_formats_dir():
    return FIXTURES / "data_formats"


@pytest.fixture(scope="session")
def umt_keys_dir():
    return FIXTURES / "umt_keys"
