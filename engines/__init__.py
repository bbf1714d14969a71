"""The work behind the tabs: plain Python APIs with no Gradio import."""
