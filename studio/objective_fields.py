"""The Fine-tune form's objective: SFT, DPO or ORPO, with DPO's β, ORPO's λ and the SFT adapter a preference run
continues from, shown only when they apply (TrainSpec `objective`, `beta`, `orpo_lambda`, `sft_adapter`)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from storage import runs
from studio.i18n import Translatable, t

OBJECTIVES = [("SFT", "sft"), ("DPO", "dpo"), ("ORPO", "orpo")]
NO_ADAPTER = ("—", "")


def sft_adapter_choices() -> list[tuple[str, str]]:
    """Completed runs a DPO/ORPO run may continue from (by output name, with their base model)."""
    return [NO_ADAPTER] + [(f"{r.name}  ← {r.base_model}", r.name) for r in runs.list_runs(200, ("completed",)) if r.adapter_path]


def objective_fields(tr: Translatable, lang0: str) -> tuple[gr.Row, gr.Radio, gr.Number, gr.Number, gr.Dropdown]:
    """The objective radio and, in a row shown for DPO/ORPO, β (DPO), λ (ORPO) and the SFT adapter: (row, objective,
    beta, orpo_lambda, sft_adapter)."""
    objective = tr.add(gr.Radio(OBJECTIVES, value="sft", label=t(lang0, "ft.field.objective"), info=t(lang0, "ft.info.objective"),
                                elem_id="ft-objective"), label="ft.field.objective", info="ft.info.objective")
    with gr.Row(visible=False, elem_id="ft-preference") as row:
        beta = tr.add(gr.Number(0.1, minimum=0, maximum=10, step=0.05, label=t(lang0, "ft.field.beta"),
                                info=t(lang0, "ft.info.beta"), elem_id="ft-beta", min_width=140),
                      label="ft.field.beta", info="ft.info.beta")
        orpo_lambda = tr.add(gr.Number(0.1, minimum=0, maximum=10, step=0.05, label=t(lang0, "ft.field.orpo_lambda"),
                                       info=t(lang0, "ft.info.orpo_lambda"), elem_id="ft-orpo-lambda", visible=False,
                                       min_width=140), label="ft.field.orpo_lambda", info="ft.info.orpo_lambda")
        sft_adapter = tr.add(gr.Dropdown([NO_ADAPTER], value="", allow_custom_value=True, label=t(lang0, "ft.field.sft_adapter"),
                                         info=t(lang0, "ft.info.sft_adapter"), elem_id="ft-sft-adapter", scale=2),
                             label="ft.field.sft_adapter", info="ft.info.sft_adapter")
    return row, objective, beta, orpo_lambda, sft_adapter


def wire_objective_fields(row: gr.Row, objective: gr.Radio, beta: gr.Number, orpo_lambda: gr.Number,
                          sft_adapter: gr.Dropdown) -> None:
    """Show the preference row for DPO/ORPO, β for DPO and λ for ORPO; the adapter list is read when it is opened."""
    def shown(value: str) -> tuple[Any, Any, Any]:
        return gr.update(visible=value in ("dpo", "orpo")), gr.update(visible=value == "dpo"), gr.update(visible=value == "orpo")

    objective.change(shown, [objective], [row, beta, orpo_lambda], api_name=False, show_progress="hidden", queue=False)
    sft_adapter.focus(lambda: gr.update(choices=sft_adapter_choices()), None, [sft_adapter], api_name=False,
                      show_progress="hidden")
