"""Reading a Gradio LinePlot's drawing in the browser: the stroke of each series' line and the legend's names."""

from __future__ import annotations

from playwright.sync_api import Page

# Per line mark of the plot: its computed stroke and opacities, and whether it has a path at all.
LINES_JS = """
(id) => [...document.querySelectorAll(`#${id} [aria-roledescription="line mark"]`)].map(p => {
  const s = getComputedStyle(p);
  return {stroke: s.stroke, opacity: Number(s.opacity), strokeOpacity: Number(s.strokeOpacity), d: p.getAttribute('d') || ''};
})
"""
# The legend's names that show inside the plot's block (a name below its bottom edge is cut off).
LEGEND_JS = """
(id) => {
  const bottom = document.getElementById(id).getBoundingClientRect().bottom;
  return [...document.querySelectorAll(`#${id} .role-legend-label text`)]
    .filter(t => t.getBoundingClientRect().bottom <= bottom + 1).map(t => t.textContent);
}
"""


def lines(page: Page, elem_id: str) -> list[dict]:
    return page.evaluate(LINES_JS, elem_id)


def legend(page: Page, elem_id: str) -> list[str]:
    return page.evaluate(LEGEND_JS, elem_id)


def visible(line: dict) -> bool:
    """A line one can see: a colour, not 'none' and not fully transparent, along a path."""
    return line["stroke"] not in ("none", "", "transparent") and line["opacity"] > 0 and line["strokeOpacity"] > 0 and bool(line["d"])


def wait_for_series(page: Page, elem_id: str, names: list[str], timeout: float = 15_000) -> None:
    """Wait until the plot draws one visible line per series in `names` and its legend names exactly them;
    fail with what it shows instead."""
    try:
        page.wait_for_function(
            f"""([id, names]) => {{
              const ls = ({LINES_JS})(id), lg = ({LEGEND_JS})(id);
              const ok = l => l.stroke !== 'none' && l.stroke !== '' && l.opacity > 0 && l.strokeOpacity > 0 && l.d;
              return ls.length === names.length && ls.every(ok)
                && lg.length === names.length && names.every(n => lg.includes(n));
            }}""",
            arg=[elem_id, names], timeout=timeout,
        )
    except Exception:
        raise AssertionError(f"#{elem_id} should draw {names}: lines {lines(page, elem_id)}, legend {legend(page, elem_id)}") from None
