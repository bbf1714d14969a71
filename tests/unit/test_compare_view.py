"""What the Compare tab draws from the ratings: the leaderboard's interval column."""

from __future__ import annotations


def test_a_leaderboard_interval_from_one_battle_is_not_a_range():
    from types import SimpleNamespace as R

    from studio.compare_tab import interval_text

    assert interval_text("en", R(battles=1, low=1264.2, high=1264.4)) == "n/a (too few battles)"
    assert interval_text("en", R(battles=5, low=1200.0, high=1200.3)) == "n/a (too few battles)"
    assert interval_text("en", R(battles=5, low=1180.4, high=1321.0)) == "1180 – 1321"
    assert interval_text("ko", R(battles=1, low=1.0, high=1.0)).startswith("없음")
