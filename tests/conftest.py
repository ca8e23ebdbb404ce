"""Test-wide settings: no network, no writes to the home directory, fixed threads."""

import os
import tempfile
from pathlib import Path

# `datasets` reads these when it is imported, so they are set before any test imports it.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="seqtool-hf-"))
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share CI's two cores: one thread each, in the worker and in the seqtool processes it
    # starts, or their OpenMP threads wait for each other (see one_thread below)
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data when present; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine OpenMP threads that wait
    for each other make a step ten times slower (measured: 72 s against 6 s for 20 steps). A module
    asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
