"""End-to-end: every tab in Korean shows no English word that is not a name, a unit or a model id.

The page is switched to Korean with the studio's own switch, then every tab (and Compare's two sub-tabs) is
opened in turn; the visible text and placeholders are read from the DOM and every Latin-script word is checked
against a short, explicit allow-list. Gradio's own strings (the upload box, the footer) count.
Not read: `title` and `aria-label` attributes (a hover tooltip, a screen reader's name: not text on the page) and
screen-reader-only text (`.sr-only`).
"""

from __future__ import annotations

import re
import time

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
    "Bradley", "Terry",  # the Bradley–Terry model: the leaderboard's score is named after it
    "TRL",  # Hugging Face's training library: the preference-pair file layouts are named after it
    "SDK", "curl",  # the `openai` SDK and curl, named in the API keys' help as the clients to use
    # keyboard keys, named as printed on them ("Enter로 전송", "Shift+Enter")
    "Enter", "Shift",
    # technical abbreviations and formats
    "API", "REST", "URL", "ID", "id", "GPU", "CPU", "RAM", "CUDA", "LoRA", "QLoRA", "SFT", "DPO", "ORPO", "GGUF",
    "JSON", "JSONL", "CSV", "TSV", "Parquet", "Markdown", "YAML", "HTTP", "SSE", "TTFT", "BLEU", "ROUGE-L", "ROUGE",
    "Elo", "BT", "LLM", "A", "B", "vs", "OpenAI-compatible", "ShareGPT", "Alpaca", "no_robots", "bf16", "fp16",
    "float32", "bfloat16", "int4", "nf4", "ChatML", "Llama", "Qwen", "Mistral", "Gemma",
    "KV",  # the KV cache (the models' metrics plot)
    "PID",  # a process id (the servers table)
    "jsonl",  # a file extension (".jsonl 업로드")
    "org/name",  # the shape of a Hub id ("허브 ID(org/name)")
    "YYYY-MM-DD",  # the date format a date field takes ("시작일(YYYY-MM-DD)")
    # the JSON fields of a pasted prompt set, shown as the format to type ({"prompt": …, "reference": …}, {"messages": […]})
    "prompt", "reference", "messages",
    # units
    "ms", "s", "tok", "tok/s", "GiB", "MiB", "KiB", "GB", "MB", "KB", "k", "M", "x",  # "B" (bytes) is above, as model B
}
# Latin words inside these elements are data, not interface: model ids, chat text, file names, code samples, table
# cells (Gradio 6 draws a table's rows as `.body-cell` divs; `table td` is its hidden sizing row). The cells the studio
# words itself are checked on their own below.
DATA_SELECTORS = [
    "#chatbot .message-content", "#model-picker input", "code", "pre", "#conversation-list", ".cm-content",
    "table td", ".body-cell", "[data-testid='textbox']", "input[type='text']", "textarea", ".msg-model", ".server-pill",
    "#whoami", ".token", ".wrap .token",
    "#cmp-counts", "#cmp-matrix th", ".ft-progress-head b",  # model names (the battle counts, the win matrix), a run's name
]
SETTLE_S = 20  # a tab's select handlers redraw it as it is now; on a busy machine that can take a while
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
    if (!visible(el) || isData(el) || el.closest('.sr-only')) continue;
    out.push({text, where: (el.closest('[id]') || {}).id || el.tagName});
  }
  for (const el of document.querySelectorAll('[placeholder]')) {
    if (!visible(el)) continue;
    const v = el.getAttribute('placeholder');
    if (v && v.trim()) out.push({text: v.trim(), where: 'placeholder @ ' + ((el.closest('[id]') || {}).id || el.tagName)});
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


def settled_english_words(page: Page) -> list[tuple[str, str, str]]:
    """`english_words` once the tab has settled: read again until none is left or SETTLE_S has passed."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        found = english_words(page)
        if not found or time.monotonic() > deadline:
            return found
        page.wait_for_timeout(1000)


def open_tab(page: Page, label: str) -> None:
    tab = page.get_by_role("tab", name=label, exact=True)
    tab.dispatch_event("click")  # a DOM click: a pointer click waits for animation frames a busy page withholds
    expect(tab).to_have_attribute("aria-selected", "true")
    page.wait_for_timeout(1500)  # the tab's select handlers redraw it as it is now


def test_every_tab_in_korean_shows_no_english_words(page: Page, studio_url: str) -> None:
    open_app(page, studio_url)
    page.locator("#language-switch label", has_text="한국어").click()
    # On a busy machine the switch's events can take a few seconds to come back.
    expect(page.get_by_role("tab", name=t("ko", "tab.chat"), exact=True)).to_be_visible(timeout=30_000)
    # Gradio's own strings follow the studio's language too (the footer's "Use via API").
    expect(page.locator("footer")).to_contain_text("API를 통해 사용", timeout=30_000)

    leftovers: dict[str, list[tuple[str, str, str]]] = {}
    for key in ("tab.chat", "tab.datasets", "tab.finetune", "tab.compare", "tab.history", "tab.models", "tab.account"):
        open_tab(page, t("ko", key))
        if key == "tab.compare":
            for sub in ("cmp.live_tab", "ev.tab", "agr.tab"):
                open_tab(page, t("ko", sub))
                leftovers[sub] = settled_english_words(page)
            continue
        leftovers[key] = settled_english_words(page)
        # A picker's shown value is read as data above; these are the studio's own words.
        if key == "tab.datasets":
            expect(page.locator("#ds-split-filter input")).to_have_value(t("ko", "ds.all"))
            page.locator("#pref-panel").click()  # the preference-pairs panel, opened
            expect(page.locator("#pref-build")).to_be_visible()
            leftovers["pref.panel"] = settled_english_words(page)
        if key == "tab.finetune":
            expect(page.locator("#ft-dataset input")).to_have_value(re.compile(r"\(예시, [\d,]+행\)"))
        if key == "tab.models":  # table cells are data, but these are the studio's own words
            expect(page.locator("#models-table")).to_contain_text(f"✓ {t('ko', 'models.yes')}")
            expect(page.locator("#models-table")).to_contain_text(t("ko", "models.kind.base"))
            expect(page.locator("#models-servers-table")).to_contain_text(f"● {t('ko', 'status.ready')}")

    report = {tab: sorted({f"{w!r} in {text!r} ({where})" for w, text, where in words}) for tab, words in leftovers.items() if words}
    assert not report, "English words left in the Korean UI:\n" + "\n".join(
        f"[{tab}]\n  " + "\n  ".join(lines) for tab, lines in report.items())
