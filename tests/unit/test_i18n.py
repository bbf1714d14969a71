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
