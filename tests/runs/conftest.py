"""What the runs/ tests share: a small SST-2 sample."""

from __future__ import annotations

import pytest

from ..helpers import sst2_sample


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """160 SST-2 train rows and 80 dev rows."""
    return sst2_sample(tmp_path_factory.mktemp("sst2_tune"), 160, 80)
