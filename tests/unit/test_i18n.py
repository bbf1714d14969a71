import json
import re

from studio.i18n import I18N_DIR, LANGUAGES, SINGULAR, t


def test_every_language_has_every_key_and_placeholder():
    en = json.loads((I18N_DIR / "en.json").read_text())
    base = {k: v for k, v in en.items() if not k.endswith(SINGULAR)}  # singular forms are a language's own
    for code in LANGUAGES:
        other = json.loads((I18N_DIR / f"{code}.json").read_text())
        assert {k for k in other if not k.endswith(SINGULAR)} == base.keys(), code
        for key, text in base.items():
            assert set(re.findall(r"{(\w+)}", other[key])) == set(re.findall(r"{(\w+)}", text)), key
        for key, text in other.items():
            if key.endswith(SINGULAR):  # a singular form names no placeholder its plural lacks
                plural = key.removesuffix(SINGULAR)
                assert plural in other and set(re.findall(r"{(\w+)}", text)) <= set(re.findall(r"{(\w+)}", other[plural])), key


def test_a_count_of_one_takes_the_languages_singular_form():
    assert t("en", "ds.n_rows", n=1) == "1 row" and t("en", "ds.n_rows", n="1") == "1 row"
    assert t("en", "ds.n_rows", n=2) == "2 rows" and t("en", "ds.n_rows", n=0) == "0 rows"
    assert t("en", "hist.lin.chats", n=1) == "from 1 chat" and t("en", "hist.count", n=1, ms="3") == "1 item · 3 ms"
    assert t("ko", "ds.n_rows", n=1) == t("ko", "ds.n_rows", n=2).replace("2", "1")  # Korean has no singular: not English's


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


def test_choices_keep_their_values_and_follow_the_language():
    import gradio as gr

    from studio.i18n import Translatable, choices_for

    spec = [("ft.preset.quick", "quick"), ("ft.preset.balanced", "balanced"), "custom"]
    assert choices_for("ko", spec) == [("빠른 테스트", "quick"), ("균형", "balanced"), ("custom", "custom")]
    tr = Translatable()
    with gr.Blocks():
        radio = tr.add(gr.Radio(choices_for("en", spec), value="quick", label="x"), label="ft.preset", choices=spec)
        live = tr.add(gr.Dropdown(), choices=lambda lang: [(t(lang, "hist.any_model"), ""), ("m1", "m1")])
    comps, updates = tr.updates("ko")
    assert comps == [radio, live]
    assert updates[0]["label"] == "프리셋" and updates[0]["choices"][0] == ("빠른 테스트", "quick")
    assert "value" not in updates[0] and "value" not in updates[1]  # what is picked stays picked
    assert updates[1]["choices"] == [(t("ko", "hist.any_model"), ""), ("m1", "m1")]


def test_tables_are_relabelled_as_shown():
    """A table's headers follow the language by position; its data stays; the UI's own words in named columns follow."""
    import gradio as gr
    import pandas as pd

    from studio.i18n import Translatable, relabel_cell

    tr = Translatable()
    keys = ("hist.col.when", "hist.col.kind", "hist.col.title", "hist.col.detail", "hist.col.match")
    with gr.Blocks():
        table = tr.add(gr.Dataframe(), headers=keys, cells={1: ("hist.kind.chat", "hist.kind.run")})
        live = tr.add(gr.Dataframe(), render=lambda lang: pd.DataFrame({t(lang, "models.col.name"): ["m"]}))
    assert tr.tables == [table]
    shown = pd.DataFrame([["2026-01-01 10:00", "Chats", "Chats about Seoul", "", ""]],
                         columns=[t("en", k) for k in keys])
    (out,) = tr.table_updates("ko", [shown])
    assert list(out.columns) == [t("ko", k) for k in keys] and list(out.columns) != list(shown.columns)
    assert out.iloc[0, 1] == t("ko", "hist.kind.chat") and out.iloc[0, 2] == "Chats about Seoul"  # a title is data
    (empty,) = tr.table_updates("ko", [None])
    assert list(empty.columns) == [t("ko", k) for k in keys] and len(empty) == 0
    (other,) = tr.table_updates("ko", [pd.DataFrame({"a": [1]})])  # not the declared shape: left as it is
    assert not isinstance(other, pd.DataFrame)
    comps, updates = tr.updates("ko")
    assert list(updates[comps.index(live)]["value"].columns) == ["이름"]
    assert relabel_cell("ko", "✓ yes", ["models.yes"]) == f"✓ {t('ko', 'models.yes')}"
    assert relabel_cell("ko", "● ready", ["status.ready"]) == f"● {t('ko', 'status.ready')}"
    assert relabel_cell("en", "yes-man", ["models.yes"]) == "yes-man" and relabel_cell("ko", 3, ["models.yes"]) == 3
