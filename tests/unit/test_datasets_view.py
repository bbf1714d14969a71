"""What the Datasets tab draws from engine results: the version diff row by row, preference pairs as table rows."""

from __future__ import annotations

from engines.datasets.formats import PreferenceRow, Row
from engines.datasets.versions import Diff
from studio.datasets_view import diff_html, pairs_frame


def qa(q: str, a: str, cat: str | None = None) -> Row:
    return Row([{"role": "user", "content": q}, {"role": "assistant", "content": a}], cat)


def test_the_diff_lists_changed_turns_old_and_new_and_the_added_and_removed_rows():
    d = Diff(added=[qa("New <b>?", "Added.")], removed=[qa("Gone?", "Removed.")],
             changed=[(qa("What is LoRA?", "An adapter.", "ft"), qa("What is LoRA?", "A low-rank adapter.", "peft"))])
    out = diff_html("en", 1, 2, d)
    assert out.startswith("v1 → v2: **1** added, **1** removed, **1** changed")
    assert "<span class='ds-old'>An adapter.</span> → <span class='ds-new'>A low-rank adapter.</span>" in out
    assert "<span class='ds-old'>ft</span> → <span class='ds-new'>peft</span>" in out  # the category changed too
    assert "New &lt;b&gt;?" in out and "<b>?" not in out  # row text is escaped, never markup
    assert "Gone?" in out and "Removed." in out
    many = Diff(added=[qa(f"Q{i}?", "A.") for i in range(12)], removed=[], changed=[])
    assert "… and 4 more" in diff_html("en", 1, 2, many, limit=8)
    assert "추가된 행" in diff_html("ko", 1, 2, d) and "… 외 4개" in diff_html("ko", 1, 2, many, limit=8)
    assert diff_html("en", 1, 2, Diff([], [], [])) == "v1 → v2: **0** added, **0** removed, **0** changed"


def test_preference_pairs_fill_the_rows_table_with_chosen_and_rejected():
    rows = [PreferenceRow([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}], "4", "5",
                          split="eval", line=7)]
    frame = pairs_frame("en", rows)
    assert frame.values.tolist() == [[7, "", "eval", 3, "2 + 2?", "✓ 4  ✗ 5"]]
    assert list(frame.columns)[4:] == ["first user turn", "last answer"]

