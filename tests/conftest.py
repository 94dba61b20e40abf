"""Every test gets its own empty step cache (estimator.step_cache), so no test reads a step
another test (or the user's own runs) captured, and the user's cache is never written."""
import pytest


@pytest.fixture(autouse=True)
def _own_step_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ROOFLINE_CACHE_DIR", str(tmp_path_factory.mktemp("step-cache")))
