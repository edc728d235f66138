"""Shared fixtures: keep every test away from the user's datasets and runs."""
import pytest


@pytest.fixture(autouse=True)
def _isolated_datasets(tmp_path_factory, monkeypatch):
    """Datasets resolve under a per-session temporary folder unless a test points elsewhere."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path_factory.getbasetemp() / "datasets"))
