"""The cold-start baseline: a bare Gradio app (6 tabs and a Chatbot) started like launch.py.

Run: .venv/bin/python bench/baseline_app.py [--no-serve] [--port P]   (used by bench/cold_start.py)
"""

from __future__ import annotations

import argparse

import gradio as gr

TABS = ("Chat", "Datasets", "Fine-tune", "Compare", "History", "Models")


def build() -> gr.Blocks:
    with gr.Blocks(title="Baseline") as demo:
        with gr.Tabs():
            for name in TABS:
                with gr.Tab(name):
                    if name == "Chat":
                        gr.Chatbot(label="Chat")
                    else:
                        gr.Markdown(f"## {name}")
    return demo


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-serve", action="store_true", help="accepted for symmetry with launch.py; ignored")
    args = p.parse_args()
    build().queue().launch(server_name=args.host, server_port=args.port)
