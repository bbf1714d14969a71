"""Chat templates with `{% generation %}` markers, so the trainer can mask everything but the assistant replies.

Each renders the same text as its family's stock template (the markers print nothing); the worker
checks that on the real tokenizer before training. `default_system` carries the system prompt a
stock template adds when the conversation has none (SmolLM2, Qwen, Llama 3.1 do), so training sees
what serving will send.
"""

from __future__ import annotations

CHATML = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{%- if default_system is defined and default_system -%}{{ '<|im_start|>system\\n' + default_system + '<|im_end|>\\n' }}{%- endif -%}"
    "{%- set rest = messages -%}"
    "{%- endif -%}"
    "{%- for m in rest -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

LLAMA3 = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\n' + messages[0]['content'] | trim + '<|eot_id|>' }}"
    "{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{%- if default_system is defined and default_system -%}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\n' + default_system | trim + '<|eot_id|>' }}"
    "{%- endif -%}"
    "{%- set rest = messages -%}"
    "{%- endif -%}"
    "{%- for m in rest -%}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if m['role'] == 'assistant' -%}"
    "{% generation %}{{ m['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ m['content'] | trim + '<|eot_id|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

GEMMA = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\\n\\n' -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set rest = messages -%}{%- endif -%}"
    "{%- for m in rest -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{{ '<start_of_turn>model\\n' }}{% generation %}{{ m['content'] | trim + '<end_of_turn>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<start_of_turn>user\\n' + (prefix if loop.first else '') + m['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "gemma": GEMMA}
END_TOKENS = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "gemma": "<end_of_turn>"}
_SIGNATURES = {"chatml": "<|im_start|>", "llama3": "<|start_header_id|>", "gemma": "<start_of_turn>"}


class TemplateError(ValueError):
    """The model's chat format has no marked template here; the message lists what is supported."""


def detect_family(stock_template: str | None) -> str:
    """Which marked template matches a model's own chat template."""
    for family, sig in _SIGNATURES.items():
        if stock_template and sig in stock_template:
            return family
    raise TemplateError(
        "No marked chat template for this model's chat format; supported: "
        + ", ".join(TEMPLATES) + ". Pick one in the spec (chat_template) if the model uses one of them."
    )
