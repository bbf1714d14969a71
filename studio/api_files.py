"""Values that `gr.api` endpoints return to `gradio_client`: a file the client downloads, rows of a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from gradio.data_classes import FileData


def downloadable(path: str | Path) -> dict[str, Any]:
    """A file written by an engine, as Gradio's file value: the server serves it, `gradio_client` downloads it and
    returns the local path (a plain path string would name a file on the server)."""
    path = Path(path)
    return FileData(path=str(path), orig_name=path.name).model_dump()


def records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """A table as a list of rows (column → value), JSON-safe."""
    if frame is None or len(frame) == 0:
        return []
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
