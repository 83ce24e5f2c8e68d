"""Amazon Beauty as preprocessed by BERT4Rec (skipped when ../shared/data/beauty is absent)."""

from __future__ import annotations

import pytest
from helpers import shared_data_dir

from bert4rec.config import build_config
from bert4rec.pipeline import prepare

SHARED = shared_data_dir()
BEAUTY = SHARED / "beauty" / "beauty.txt.gz" if SHARED else None

pytestmark = pytest.mark.skipif(
    BEAUTY is None or not BEAUTY.is_file(),
    reason="needs ../shared/data/beauty/beauty.txt.gz (or $BERT4REC_SHARED_DATA); not present here",
)


def test_beauty_preset_gives_the_papers_table():
    prepared = prepare(build_config("beauty", {"data": {"path": str(BEAUTY)}}))
    stats = prepared.stats
    assert (stats["users"], stats["items"], stats["interactions"]) == (40_226, 54_542, 353_962)
    assert stats["avg_length"] == pytest.approx(8.8, abs=0.05)
