"""Batch evaluation jobs: generate with every model, judge against the baseline, score, summarise, log to MLflow.

Each answer and verdict is stored the moment it is final, so a stop, a crash or an app restart loses nothing:
a resumed (or restarted) evaluation asks only for what is missing or failed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from engines.accounts import Actor, require_owner
from engines.endpoints import Endpoint
from engines.evaluation import report
from engines.evaluation.judge import JUDGE_PARAMS, judge_pair
from engines.evaluation.metrics import reference_scores
from engines.inference import ChatParams, Generation, generate_many
from engines.settings import Settings
from storage import evals

log = structlog.get_logger(__name__)
REPO = Path(__file__).resolve().parents[2]


class EvalError(ValueError):
    """The evaluation cannot start; the message is for the user."""


@dataclass
class Progress:
    phase: str = "queued"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    message: str = ""


class EvalManager:
    """Runs evaluations on background threads (one event loop each); the UI polls `progress`."""

    def __init__(self, settings: Settings, endpoint_for: Callable[[str], Endpoint | None], *,
                 wait_for_servers: float = 0.0) -> None:
        self.settings = settings
        self.endpoint_for = endpoint_for
        self.wait_for_servers = wait_for_servers
        self._progress: dict[int, Progress] = {}
        self._tasks: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task]] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = False

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def start(self, *, resume_active: bool = True) -> list[int]:
        """After an app restart: evaluations left running continue (waiting for their servers) or are marked interrupted."""
        self._stopping = False
        picked = []
        for run in evals.list_evals():
            if run.status in (*evals.ACTIVE, "interrupted"):
                if resume_active:
                    picked.append(run.id)
                    self._launch(run.id, wait=max(self.wait_for_servers, self.settings.vllm_start_timeout))
                else:
                    evals.update_eval(run.id, status="interrupted", phase=None)
        return picked

    def submit(self, *, actor: Actor, name: str, models: list[str], examples: list[dict[str, Any]], source: str,
               judge: str | None = None, params: dict[str, Any] | None = None, dataset_version_id: int | None = None,
               training_run_id: int | None = None) -> int:
        """Store and start an evaluation owned by `actor` (visible to the team; stopped/resumed by its owner or an admin)."""
        models = [m for m in dict.fromkeys(m.strip() for m in models if m and m.strip())]
        if not models:
            raise EvalError("Pick at least one model to evaluate.")
        if judge and len(models) < 2:
            raise EvalError("A judge compares models: pick at least two (the first is the baseline).")
        if not examples:
            raise EvalError("The prompt set is empty.")
        missing = [m for m in [*models, *([judge] if judge else [])] if self.endpoint_for(m) is None]
        if missing:
            raise EvalError(f"Not served right now: {', '.join(missing)}. Start it in Models (or Chat) first.")
        p = {"temperature": 0.0, "max_tokens": 256, "concurrency": self.settings.eval_concurrency, "retries": 2, **(params or {})}
        run = evals.create_eval(name=name.strip() or f"eval {time.strftime('%Y-%m-%d %H:%M')}", models=models, judge=judge,
                                source=source, params=p, examples=examples, dataset_version_id=dataset_version_id,
                                training_run_id=training_run_id, owner_id=actor.id)
        log.info("eval.submitted", eval_id=run.id, models=len(models), examples=len(examples), judge=bool(judge), owner=actor.name)
        self._launch(run.id)
        return run.id

    def submit_batch(self, *, actor: Actor, name: str, models: list[str], judge: str | None = None, source: str = "pasted",
                     version_id: int | None = None, split: str = "eval", run_id: int | None = None, pasted: str = "",
                     prompts: list[dict[str, Any]] | None = None, limit: int = 0,
                     params: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Build the prompt set a user picked (a saved dataset version, a fine-tune's eval split, pasted lines, or
        `prompts` given as {"prompt", "reference"} / {"messages"} objects) and start it; returns (id, the prompt set).
        PromptSetError / EvalError (ValueErrors) say what is wrong."""
        from engines.evaluation.prompts import build_prompt_set

        if prompts:
            pasted = "\n".join(json.dumps(p, ensure_ascii=False) for p in prompts)
        ps = build_prompt_set(self.settings, source, version_id=version_id, split=split, run_id=run_id, pasted=pasted,
                              limit=int(limit or 0))
        eid = self.submit(actor=actor, name=name or "", models=list(models or []), judge=judge or None,
                          examples=[e.as_dict() for e in ps.examples], source=ps.source, params=params,
                          dataset_version_id=ps.dataset_version_id, training_run_id=ps.training_run_id)
        return eid, ps

    def resume(self, eval_id: int, *, actor: Actor) -> None:
        run = evals.get_eval(eval_id)
        if run is not None:
            require_owner(actor, run.owner_id, "evaluation")
        if run is None or run.status not in evals.RESUMABLE:
            raise EvalError("Only an interrupted, failed or cancelled evaluation can be resumed.")
        evals.update_eval(eval_id, status="queued", error=None, finished_at=None)
        self._launch(eval_id)

    def cancel(self, eval_id: int, *, actor: Actor) -> bool:
        """Stop a running evaluation (its owner or an admin); False when it is not running here."""
        run = evals.get_eval(eval_id)
        if run is None:
            return False
        require_owner(actor, run.owner_id, "evaluation")
        return self._cancel(eval_id)

    def _cancel(self, eval_id: int) -> bool:
        with self._lock:
            held = self._tasks.get(eval_id)
        if not held:
            return False
        loop, task = held
        loop.call_soon_threadsafe(task.cancel)
        return True

    def running(self, eval_id: int) -> bool:
        t = self._threads.get(eval_id)
        return bool(t and t.is_alive())

    def progress(self, eval_id: int) -> Progress | None:
        return self._progress.get(eval_id)

    def wait(self, eval_id: int, timeout: float | None = None) -> None:
        t = self._threads.get(eval_id)
        if t:
            t.join(timeout)

    def stop(self) -> None:
        """At app exit: cancel what runs (saved rows stay; the next start picks the rest up)."""
        self._stopping = True
        for eval_id in list(self._tasks):
            self._cancel(eval_id)
        for t in list(self._threads.values()):
            t.join(10)

    # ---- the work ------------------------------------------------------------------------------------------
    def _launch(self, eval_id: int, wait: float = 0.0) -> None:
        self._progress[eval_id] = Progress()
        t = threading.Thread(target=self._thread, args=(eval_id, wait), name=f"eval-{eval_id}", daemon=True)
        self._threads[eval_id] = t
        t.start()

    def _thread(self, eval_id: int, wait: float) -> None:
        async def main() -> None:
            task = asyncio.current_task()
            assert task is not None
            with self._lock:
                self._tasks[eval_id] = (asyncio.get_running_loop(), task)
            await self._execute(eval_id, wait)

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            if self._stopping:  # the app is closing, not the user stopping it: the next start carries on
                evals.update_eval(eval_id, status="interrupted", phase=None)
            else:
                evals.finish_eval(eval_id, "cancelled", error="Stopped; the answers so far are kept. Resume asks only for the rest.")
            self._set(eval_id, phase="cancelled")
            log.info("eval.cancelled", eval_id=eval_id)
        except EvalError as exc:
            evals.finish_eval(eval_id, "failed", error=str(exc))
            self._set(eval_id, phase="failed", message=str(exc))
        except Exception as exc:  # noqa: BLE001  # the run row must say what happened; the app stays up
            log.exception("eval.crashed", eval_id=eval_id)
            evals.finish_eval(eval_id, "failed", error=f"{exc.__class__.__name__}: {exc}")
            self._set(eval_id, phase="failed", message=str(exc))
        finally:
            with self._lock:
                self._tasks.pop(eval_id, None)

    def _set(self, eval_id: int, **fields: Any) -> None:
        p = self._progress.setdefault(eval_id, Progress())
        for k, v in fields.items():
            setattr(p, k, v)

    async def _endpoint(self, model: str, wait: float) -> Endpoint:
        deadline = time.monotonic() + wait
        while True:
            ep = self.endpoint_for(model)
            if ep is not None:
                return ep
            if time.monotonic() >= deadline:
                raise EvalError(f"{model} is not served: start it, then resume this evaluation.")
            await asyncio.sleep(2.0)

    async def _execute(self, eval_id: int, wait: float) -> None:
        run = evals.get_eval(eval_id)
        if run is None:
            return
        models, params = evals.loads(run.models, []), evals.loads(run.params, {})
        examples = evals.loads(run.examples, [])
        evals.update_eval(eval_id, status="running", phase="generate")
        endpoints = {m: await self._endpoint(m, wait) for m in models}
        judge_ep = await self._endpoint(run.judge, wait) if run.judge else None
        began = time.monotonic()
        await self._generate(eval_id, models, endpoints, examples, params)
        gen_s = time.monotonic() - began
        if judge_ep is not None:
            evals.update_eval(eval_id, phase="judge")
            await self._judge(eval_id, models, judge_ep, examples, params)
        evals.update_eval(eval_id, phase="score")
        self._set(eval_id, phase="score", done=0, total=0)
        await asyncio.to_thread(self._score, eval_id, examples)
        run = evals.get_eval(eval_id)
        summary = report.summarise(run)
        summary["generation_seconds"] = round(gen_s, 2)
        evals.update_eval(eval_id, summary=summary, phase="log")
        self._set(eval_id, phase="log")
        mlflow_id, mlflow_error = await asyncio.to_thread(self._log_mlflow, evals.get_eval(eval_id), summary)
        if mlflow_error:
            summary["mlflow_error"] = mlflow_error
        evals.finish_eval(eval_id, "completed", summary=summary, mlflow_run_id=mlflow_id)
        self._set(eval_id, phase="completed")
        log.info("eval.completed", eval_id=eval_id, seconds=round(time.monotonic() - began, 1))

    async def _generate(self, eval_id: int, models: list[str], endpoints: dict[str, Endpoint], examples: list[dict],
                        params: dict) -> None:
        have = {(r.example, r.model) for r in evals.results(eval_id) if r.output is not None}
        todo = {m: [i for i in range(len(examples)) if (i, m) not in have] for m in models}
        total = sum(len(v) for v in todo.values())
        self._set(eval_id, phase="generate", done=0, total=total, started=time.monotonic())
        # One gate per server: a base and its adapters share one vLLM process and its batch.
        gates: dict[str, asyncio.Semaphore] = {}
        for ep in endpoints.values():
            gates.setdefault(ep.base_url, asyncio.Semaphore(max(1, int(params.get("concurrency") or 8))))
        chat = ChatParams(temperature=float(params.get("temperature", 0.0)), max_tokens=int(params.get("max_tokens", 256)),
                          seed=params.get("seed"))

        def stored(model: str, indices: list[int]) -> Callable[[Generation], None]:
            def save(g: Generation) -> None:
                evals.save_result(eval_id, indices[g.index], model, output=g.text, error=g.error, attempts=g.attempts,
                                  completion_tokens=g.tokens, latency_ms=g.latency_ms)
                self._progress[eval_id].done += 1
            return save

        await asyncio.gather(*(
            generate_many(endpoints[m], [examples[i]["messages"] for i in idx], chat, gate=gates[endpoints[m].base_url],
                          retries=int(params.get("retries", 2)), timeout=self.settings.request_timeout,
                          on_result=stored(m, idx))
            for m, idx in todo.items() if idx))

    async def _judge(self, eval_id: int, models: list[str], judge: Endpoint, examples: list[dict], params: dict) -> None:
        baseline, candidates = models[0], models[1:]
        rows = {(r.example, r.model): r for r in evals.results(eval_id)}
        todo = [(i, m) for m in candidates for i in range(len(examples))
                if (r := rows.get((i, m))) is not None and r.judge_outcome in (None, "error")]
        self._set(eval_id, phase="judge", done=0, total=len(todo), started=time.monotonic())
        gate = asyncio.Semaphore(max(1, int(params.get("judge_concurrency") or params.get("concurrency") or 8)))
        # A verdict's length bounds what judging costs: a small or chatty judge writes to the limit on every pair.
        verdict_params = replace(JUDGE_PARAMS, max_tokens=int(params.get("judge_max_tokens") or JUDGE_PARAMS.max_tokens))

        async def one(i: int, model: str) -> None:
            cand, base = rows[(i, model)], rows.get((i, baseline))
            if cand.output is None or base is None or base.output is None:
                evals.save_result(eval_id, i, model, judge_outcome="skipped",
                                  judge_detail={"error": "no answer to judge (generation failed)"})
            else:
                ex = examples[i]
                async with gate:
                    j = await judge_pair(judge, _question(ex), cand.output, base.output, ex.get("reference"),
                                         timeout=self.settings.request_timeout, params=verdict_params)
                evals.save_result(eval_id, i, model, judge_outcome=j.outcome, judge_detail=j.detail())
            self._progress[eval_id].done += 1

        await asyncio.gather(*(one(i, m) for i, m in todo))

    def _score(self, eval_id: int, examples: list[dict]) -> None:
        for r in evals.results(eval_id):
            ref = examples[r.example].get("reference") if r.example < len(examples) else None
            if r.output is None or not ref or r.rouge_l is not None:
                continue
            evals.save_result(eval_id, r.example, r.model, **reference_scores(r.output, ref))

    def _log_mlflow(self, run: Any, summary: dict) -> tuple[str | None, str | None]:
        """Write results.csv + summary.json, then log them from a subprocess (the app never imports mlflow)."""
        folder = self.settings.data_dir.resolve() / "evals" / str(run.id)
        folder.mkdir(parents=True, exist_ok=True)
        report.results_frame(run).to_csv(folder / "results.csv", index=False, encoding="utf-8-sig")
        (folder / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
        (folder / "mlflow.json").write_text(json.dumps({
            "tracking_uri": self.settings.mlflow_uri, "artifact_root": str(self.settings.mlflow_artifacts_path),
            "eval_id": run.id, "name": run.name, "run_id": run.mlflow_run_id,
            "params": {**evals.loads(run.params, {}), "models": run.models, "judge": run.judge or "", "source": run.source},
            "summary": summary,
        }, ensure_ascii=False), encoding="utf-8")
        try:
            proc = subprocess.run([sys.executable, "-m", "engines.evaluation.tracking", str(folder)], cwd=REPO,
                                  capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return None, "MLflow logging timed out"
        if proc.returncode != 0:
            log.warning("eval.mlflow_failed", eval_id=run.id, stderr=proc.stderr[-500:])
            return None, f"MLflow logging failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        return proc.stdout.strip().splitlines()[-1], None


def _question(example: dict) -> str:
    """The judge sees the whole request: earlier turns included, so follow-ups make sense."""
    msgs = example.get("messages", [])
    if len(msgs) == 1:
        return msgs[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in msgs)
