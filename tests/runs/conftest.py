"""What the runs/ tests share: a small SST-2 sample."""

from __future__ import annotations

import pytest

from ..helpers import DATA, head


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """160 SST-2 train rows and 80 dev rows."""
    d = tmp_path_factory.mktemp("sst2_tune")
    return {
        "train": head(DATA / "en/sst2/train.tsv", d / "train.tsv", 160),
        "validation": head(DATA / "en/sst2/dev.tsv", d / "dev.tsv", 80),
    }
