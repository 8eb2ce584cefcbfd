"""The shared real data sets, skipped cleanly where they are absent."""
import pytest

from medkern.data import shared_data_dir


@pytest.fixture(scope="session")
def real_data():
    """A function from a path inside the shared data folder to that file, skipping the test if it is missing."""
    root = shared_data_dir()

    def get(relative):
        if root is None or not (root / relative).exists():
            pytest.skip(f"real data {relative} not found (set MEDKERN_DATA or provide ../shared/data)")
        return root / relative
    return get
