"""End-to-end: every tab in Korean shows no English word that is not a name, a unit or a model id.

The page is switched to Korean with the studio's own switch, then every tab (and Compare's two sub-tabs) is
opened in turn; the visible text, placeholders and button titles are read from the DOM and every Latin-script
word is checked against a short, explicit allow-list. Gradio's own strings (the upload box, the footer) count.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from studio.i18n import t
from tests.e2e.test_chat_browser import open_app

pytestmark = pytest.mark.browser

# Names, units, formats and ids that stay in Latin script in a Korean UI. Keep this short: a new entry needs a
# reason (a product or model name, a unit, a file format, a metric's standard name).
ALLOWED = {
    # product and project names
    "Chat", "Studio", "Gradio", "MLflow", "vLLM", "Hugging", "Face", "Hub", "Unsloth", "LangChain", "OpenAI",
    "Prometheus", "Grafana", "PyTorch", "SmolLM2-135M-Instruct", "SmolLM2-135M", "English",
    # technical abbreviations and formats
    "API", "REST", "URL", "ID", "id", "GPU", "CPU", "RAM", "CUDA", "LoRA", "QLoRA", "SFT", "DPO", "ORPO", "GGUF",
    "JSON", "JSONL", "CSV", "TSV", "Parquet", "Markdown", "YAML", "HTTP", "SSE", "TTFT", "BLEU", "ROUGE-L", "ROUGE",
    "Elo", "BT", "LLM", "A", "B", "vs", "OpenAI-compatible", "ShareGPT", "Alpaca", "no_robots", "bf16", "fp16",
    "float32", "bfloat16", "int4", "nf4", "ChatML", "Llama", "Qwen", "Mistral", "Gemma",
    # units
    "ms", "s", "tok", "GiB", "MiB", "KiB", "GB", "MB", "KB", "B", "k", "M", "x",
}
# Latin words inside these elements are data, not interface: model ids, chat text, file names, code samples.
DATA_SELECTORS = [
    "#chatbot .message-content", "#model-picker input", "code", "pre", "#conversation-list", ".cm-content",
    "table td", "[data-testid='textbox']", "input[type='text']", "textarea", ".msg-model", ".server-pill",
    "#whoami", ".token", ".wrap .token",
]
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/']*[A-Za-z0-9]|[A-Za-z]")

VISIBLE_TEXT_JS = """
(dataSelectors) => {
  const isData = (el) => dataSelectors.some((s) => el.closest && el.closest(s));
  const visible = (el) => {
    if (!el || !el.getClientRects().length) return false;
    const st = getComputedStyle(el);
    return st.visibility !== 'hidden' && st.display !== 'none' && parseFloat(st.opacity || '1') > 0;
  };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    const text = n.textContent.trim();
    if (!text || !el || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName)) continue;
    if (!visible(el) || isData(el)) continue;
    out.push({text, where: (el.closest('[id]') || {}).id || el.tagName});
  }
  for (const el of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
    if (!visible(el)) continue;
    for (const attr of ['placeholder', 'title', 'aria-label']) {
      const v = el.getAttribute(attr);
      if (v && v.trim()) out.push({text: v.trim(), where: attr + ' @ ' + ((el.closest('[id]') || {}).id || el.tagName)});
    }
  }
  return out;
}
"""


def english_words(page: Page) -> list[tuple[str, str, str]]:
    """(word, its text, where) for every visible Latin-script word that the allow-list does not name."""
    found = []
    for item in page.evaluate(VISIBLE_TEXT_JS, DATA_SELECTORS):
        for word in WORD.findall(item["text"]):
            if word not in ALLOWED and word.strip(".-/'") not in ALLOWED:
                found.append((word, item["text"][:80], item["where"]))
    return found


def open_tab(page: Page, label: str) -> None:
    page.get_by_role("tab", name=label, exact=True).click()
    page.wait_for_timeout(1500)  # the tab's select handlers redraw it as it is now


def test_every_tab_in_korean_shows_no_english_words(page: Page, studio_url: str) -> None:
    open_app(page, studio_url)
    page.locator("#language-switch label", has_text="한국어").click()
    expect(page.get_by_role("tab", name=t("ko", "tab.chat"), exact=True)).to_be_visible()
    # Gradio's own strings follow the studio's language too (the footer's "Use via API").
    expect(page.locator("footer")).to_contain_text("API를 통해 사용")

    leftovers: dict[str, list[tuple[str, str, str]]] = {}
    for key in ("tab.chat", "tab.datasets", "tab.finetune", "tab.compare", "tab.history", "tab.models", "tab.account"):
        open_tab(page, t("ko", key))
        if key == "tab.compare":
            for sub in ("cmp.live_tab", "ev.tab"):
                open_tab(page, t("ko", sub))
                leftovers[sub] = english_words(page)
            continue
        leftovers[key] = english_words(page)

    report = {tab: sorted({f"{w!r} in {text!r} ({where})" for w, text, where in words}) for tab, words in leftovers.items() if words}
    assert not report, "English words left in the Korean UI:\n" + "\n".join(
        f"[{tab}]\n  " + "\n  ".join(lines) for tab, lines in report.items())
