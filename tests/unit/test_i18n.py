import json
import re

from studio.i18n import I18N_DIR, LANGUAGES, t


def test_every_language_has_every_key_and_placeholder():
    en = json.loads((I18N_DIR / "en.json").read_text())
    for code in LANGUAGES:
        other = json.loads((I18N_DIR / f"{code}.json").read_text())
        assert other.keys() == en.keys(), code
        for key, text in en.items():
            assert set(re.findall(r"{(\w+)}", other[key])) == set(re.findall(r"{(\w+)}", text)), key


def test_lookup_and_fallback():
    assert t("ko", "tab.chat") == "채팅" and t("en", "tab.chat") == "Chat"
    assert t("xx", "tab.chat") == "Chat"
    assert t("en", "chat.stats", ttft=1, tps=2, tokens=3) == "TTFT 1 ms · 2 tok/s · 3 tokens"


def test_every_key_the_ui_names_exists():
    """A key typed wrong shows up on screen as 'ft.open_mlflow': catch it here instead."""
    from pathlib import Path

    en = json.loads((I18N_DIR / "en.json").read_text())
    studio = Path(__file__).resolve().parents[2] / "studio"
    literal = re.compile(r"""(?:\bt\(\s*\w+,\s*|\b(?:label|value|info|placeholder)=)["']([a-z]+\.[a-z0-9_.]+)["']""")
    spaces = {k.split(".")[0] for k in en}
    used = {k for f in studio.glob("*.py") for k in literal.findall(f.read_text(encoding="utf-8")) if k.split(".")[0] in spaces}
    assert len(used) > 100
    assert sorted(k for k in used if k not in en) == []
