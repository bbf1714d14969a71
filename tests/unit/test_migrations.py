from storage import connect
from storage.migrations import MIGRATIONS, applied_migrations, apply_migrations

FINAL_MESSAGE_COLUMNS = {
    "id", "conversation_id", "role", "content", "model", "params", "ttft_ms", "prompt_tokens", "completion_tokens",
    "tok_per_s", "duration_ms", "finish_reason", "error", "feedback", "active", "created_at", "turn", "reply_to",
}


def columns(db, table):
    return {c.name for c in db.get_columns(table)}


def test_fresh_database_has_the_final_schema(db):
    assert columns(db, "messages") == FINAL_MESSAGE_COLUMNS
    assert {"id", "title", "model", "system_prompt", "created_at", "updated_at", "owner_id", "source"} == columns(db, "conversations")
    for table in ("battles", "datasets", "training_runs", "eval_runs"):
        assert "owner_id" in columns(db, table)
    assert {"id", "name", "password_hash", "role", "disabled", "created_at"} == columns(db, "users")
    assert {"id", "user_id", "name", "prefix", "key_hash", "created_at", "last_used_at", "revoked_at"} == columns(db, "api_keys")
    assert "kind" in columns(db, "datasets")
    assert {"id", "battle_id", "judge", "verdict", "detail", "created_at"} == columns(db, "battle_judgements")
    assert {"compute", "remote_job_id"} <= columns(db, "training_runs")  # where a run runs (local | ray) and its job id there
    assert applied_migrations(db) == {n for n, _ in MIGRATIONS}
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_upgrade_from_every_older_schema_keeps_data(tmp_path):
    for upto in range(1, len(MIGRATIONS)):
        url = f"sqlite:///{tmp_path / f'old{upto}.db'}"
        db = connect(url, migrate=False)
        apply_migrations(db, upto=upto)
        assert applied_migrations(db) == set(range(1, upto + 1))
        db.execute_sql("INSERT INTO conversations (title, created_at, updated_at) VALUES ('kept', '2026-01-01', '2026-01-01')")
        extra = ", active" if "active" in columns(db, "messages") else ""  # NOT NULL from m002 on
        db.execute_sql(
            f"INSERT INTO messages (conversation_id, role, content, feedback, created_at{extra}) "
            f"VALUES (1, 'user', '안녕', 0, '2026-01-01'{', 1' if extra else ''})"
        )
        db.close()
        db = connect(url)  # the app's start: applies what is pending
        assert columns(db, "messages") == FINAL_MESSAGE_COLUMNS
        assert db.table_exists("training_runs") and db.table_exists("models")
        row = db.execute_sql("SELECT content, active FROM messages").fetchone()
        assert row[0] == "안녕" and row[1] in (1, True)
        assert db.execute_sql("SELECT owner_id, source FROM conversations").fetchone() == (None, "ui")  # adopted at start
        db.close()


def test_migrations_are_idempotent(db):
    assert apply_migrations(db) == []
    # even if the record table were lost, re-running the steps changes nothing
    db.execute_sql("DELETE FROM schema_migrations")
    assert len(apply_migrations(db)) == len(MIGRATIONS)
    assert columns(db, "messages") == FINAL_MESSAGE_COLUMNS


def test_a_run_row_from_before_m010_keeps_its_data_and_reads_as_local(tmp_path):
    url = f"sqlite:///{tmp_path / 'old9.db'}"
    db = connect(url, migrate=False)
    apply_migrations(db, upto=9)
    db.execute_sql("INSERT INTO training_runs (name, base_model, dataset, method, spec, status, run_dir, created_at) "
                   "VALUES ('old', 'b', 'd', 'lora', '{}', 'completed', '/x', '2026-01-01')")
    db.close()
    db = connect(url)
    assert db.execute_sql("SELECT name, compute, remote_job_id FROM training_runs").fetchone() == ("old", None, None)
    db.close()


def test_messages_from_before_m011_get_turns_and_a_regenerated_answer_is_a_version_of_its_question(tmp_path):
    url = f"sqlite:///{tmp_path / 'old10.db'}"
    db = connect(url, migrate=False)
    apply_migrations(db, upto=10)
    db.execute_sql("INSERT INTO conversations (id, title, created_at, updated_at, source) VALUES (1, 't', '2026-01-01', '2026-01-01', 'ui')")
    for mid, role, active in ((1, "user", 1), (2, "assistant", 0), (3, "assistant", 1), (4, "user", 1), (5, "assistant", 1)):
        db.execute_sql("INSERT INTO messages (id, conversation_id, role, content, feedback, active, created_at) "
                       "VALUES (?, 1, ?, 'x', 0, ?, '2026-01-01')", (mid, role, active))
    db.close()
    db = connect(url)
    rows = db.execute_sql("SELECT id, turn, reply_to FROM messages ORDER BY id").fetchall()
    assert rows == [(1, 1, None), (2, 1, 1), (3, 1, 1), (4, 4, None), (5, 4, 4)]
    db.close()
