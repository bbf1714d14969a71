"""Log one finished batch evaluation to MLflow: `python -m engines.evaluation.tracking EVAL_DIR`.

Run as a subprocess so the app never imports mlflow; prints the MLflow run id on its last line.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

EXPERIMENT = "chat-studio-eval"


def log_eval(folder: Path) -> str:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    info = json.loads((folder / "mlflow.json").read_text(encoding="utf-8"))
    mlflow.set_tracking_uri(info["tracking_uri"])
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        Path(info["artifact_root"]).mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(EXPERIMENT, artifact_location=Path(info["artifact_root"]).as_uri())
    else:
        exp_id = exp.experiment_id
    with mlflow.start_run(experiment_id=exp_id, run_name=info["name"], run_id=info.get("run_id")) as run:
        mlflow.set_tags({"chat_studio.eval_id": str(info["eval_id"]), "chat_studio.kind": "batch-eval"})
        mlflow.log_params({k: str(v)[:500] for k, v in info["params"].items()})
        metrics = {}
        for i, (model, row) in enumerate(info["summary"]["models"].items()):
            mlflow.set_tag(f"model_{i}", model)
            for key, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    metrics[f"{_key(model)}/{key}"] = float(value)
        mlflow.log_metrics(metrics)
        for name in ("results.csv", "summary.json"):
            if (folder / name).exists():
                mlflow.log_artifact(str(folder / name))
        return run.info.run_id


def _key(model: str) -> str:
    """MLflow metric names allow letters, digits and _-. /: anything else in a model name becomes _."""
    return re.sub(r"[^\w\-. /]", "_", model)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m engines.evaluation.tracking EVAL_DIR", file=sys.stderr)
        return 2
    print(log_eval(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
