"""DATABASE_URL=postgresql://… works: the same migrations and chat storage on a real PostgreSQL server
(a throwaway cluster on 127.0.0.1, started from Debian's postgresql binaries)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def pg_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server binaries are missing: `bash scripts/install.sh --dev` installs them"
    bin_dir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(root / "db"), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(root / "db"), "-w", "-l", str(root / "log"), "-o",
                                 f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(root / "db"), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_migrations_and_chats_on_postgresql(pg_url):
    from storage import chats, connect
    from storage.migrations import MIGRATIONS, applied_migrations, apply_migrations

    db = connect(pg_url.replace("postgresql://", "postgresql+asyncpg://"))  # the seed's SQLAlchemy form, too
    try:
        assert applied_migrations(db) == {n for n, _ in MIGRATIONS}
        assert apply_migrations(db) == []
        assert {c.name for c in db.get_columns("messages")} >= {"active", "error", "duration_ms", "ttft_ms", "feedback"}
        conv = chats.create_conversation()
        chats.add_message(conv.id, "user", "한국어로 답해 주세요")
        a = chats.add_message(conv.id, "assistant", "네, 알겠습니다.", ttft_ms=80.5, finish_reason="stop")
        chats.set_feedback(a.id, 1)
        assert [c.id for c in chats.list_conversations("알겠")] == [conv.id]
        assert chats.get_conversation(conv.id).title == "한국어로 답해 주세요"
        chats.retire_from(conv.id, a.id)
        assert [m.role for m in chats.active_messages(conv.id)] == ["user"]
        chats.delete_conversation(conv.id)
        assert chats.get_conversation(conv.id) is None
    finally:
        db.close()
