import json
import logging

import structlog

from engines.logs import configure_logging


def test_json_lines_with_numbers_and_no_secrets(tmp_path):
    path = configure_logging(tmp_path, console=False)
    log = structlog.get_logger("t")
    log.info("model.call", model="m", prompt_tokens=12, completion_tokens=5, api_key="sk-secret", hf_token="hf_abc")
    logging.getLogger("plain").warning("stdlib too")
    for h in logging.getLogger().handlers:
        h.flush()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    call = next(x for x in lines if x["event"] == "model.call")
    assert call["prompt_tokens"] == 12 and call["completion_tokens"] == 5 and call["level"] == "info"
    assert "sk-secret" not in path.read_text() and "hf_abc" not in path.read_text()
    assert any(x["event"] == "stdlib too" for x in lines)
