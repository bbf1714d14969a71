"""Numbered, idempotent schema migrations, recorded in `schema_migrations`.

Each step checks before it changes, so running it twice (or on a half-migrated copy) is safe.
Add a new step at the end of MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

from peewee import BooleanField, CharField, Database, FloatField, IntegerField, PostgresqlDatabase, TextField
from playhouse.migrate import SchemaMigrator, migrate

from storage.models import utcnow


def _types(db: Database) -> dict[str, str]:
    if isinstance(db, PostgresqlDatabase):
        return {"pk": "SERIAL PRIMARY KEY", "float": "DOUBLE PRECISION", "ts": "TIMESTAMP"}
    return {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "float": "REAL", "ts": "DATETIME"}


def m001_conversations_and_messages(db: Database) -> None:
    t = _types(db)
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS conversations (
            id {t['pk']},
            title VARCHAR(200) NOT NULL,
            model VARCHAR(300),
            system_prompt TEXT,
            created_at {t['ts']} NOT NULL,
            updated_at {t['ts']} NOT NULL)"""
    )
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS messages (
            id {t['pk']},
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            role VARCHAR(16) NOT NULL,
            content TEXT NOT NULL,
            model VARCHAR(300),
            params TEXT,
            ttft_ms {t['float']},
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            tok_per_s {t['float']},
            finish_reason VARCHAR(32),
            feedback INTEGER NOT NULL DEFAULT 0,
            created_at {t['ts']} NOT NULL)"""
    )


def m002_message_history_and_indexes(db: Database) -> None:
    """Keep regenerated/edited messages (active flag), record errors and durations, index the hot queries."""
    migrator = SchemaMigrator.from_database(db)
    have = {c.name for c in db.get_columns("messages")}
    ops = []
    if "active" not in have:
        ops.append(migrator.add_column("messages", "active", BooleanField(default=True)))
    if "error" not in have:
        ops.append(migrator.add_column("messages", "error", TextField(null=True)))
    if "duration_ms" not in have:
        ops.append(migrator.add_column("messages", "duration_ms", FloatField(null=True)))
    if ops:
        migrate(*ops)
    db.execute_sql("CREATE INDEX IF NOT EXISTS messages_conversation_id ON messages (conversation_id, id)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS conversations_updated_at ON conversations (updated_at)")


def m003_training_runs_and_models(db: Database) -> None:
    """Fine-tuning jobs and the model catalogue, with lineage: adapter model -> run -> base model, dataset."""
    t = _types(db)
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS models (
            id {t['pk']},
            name VARCHAR(200) NOT NULL UNIQUE,
            kind VARCHAR(16) NOT NULL,
            path TEXT,
            url TEXT,
            parent VARCHAR(300),
            run_id INTEGER,
            created_at {t['ts']} NOT NULL)"""
    )
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS training_runs (
            id {t['pk']},
            name VARCHAR(200) NOT NULL UNIQUE,
            base_model VARCHAR(300) NOT NULL,
            dataset TEXT NOT NULL,
            dataset_version_id INTEGER,
            method VARCHAR(16) NOT NULL,
            spec TEXT NOT NULL,
            status VARCHAR(16) NOT NULL,
            run_dir TEXT NOT NULL,
            pid INTEGER,
            pid_started VARCHAR(32),
            heartbeat_at {t['ts']},
            backend VARCHAR(32),
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            events_offset INTEGER NOT NULL DEFAULT 0,
            mlflow_run_id VARCHAR(64),
            metrics TEXT,
            adapter_path TEXT,
            model_id INTEGER REFERENCES models (id) ON DELETE SET NULL,
            error TEXT,
            cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
            created_at {t['ts']} NOT NULL,
            started_at {t['ts']},
            finished_at {t['ts']})"""
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS training_runs_status ON training_runs (status)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS models_parent ON models (parent)")


def m004_datasets_and_versions(db: Database) -> None:
    """Datasets and their immutable versions (content hash, row count, format, parent version)."""
    t = _types(db)
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS datasets (
            id {t['pk']},
            name VARCHAR(200) NOT NULL UNIQUE,
            source_format VARCHAR(32),
            note TEXT,
            created_at {t['ts']} NOT NULL,
            updated_at {t['ts']} NOT NULL)"""
    )
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS dataset_versions (
            id {t['pk']},
            dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            path TEXT NOT NULL,
            content_hash VARCHAR(64) NOT NULL,
            row_count INTEGER NOT NULL,
            format VARCHAR(32) NOT NULL,
            parent_id INTEGER REFERENCES dataset_versions (id) ON DELETE SET NULL,
            note TEXT,
            created_at {t['ts']} NOT NULL,
            UNIQUE (dataset_id, version))"""
    )
    # The editable working copy of each dataset (paged and searched in SQL), and its undo log.
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS dataset_rows (
            id {t['pk']},
            dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            messages TEXT NOT NULL,
            category VARCHAR(100),
            split VARCHAR(8),
            search TEXT NOT NULL,
            tokens INTEGER)"""
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS dataset_rows_dataset ON dataset_rows (dataset_id, id)")
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS dataset_edits (
            id {t['pk']},
            dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            action VARCHAR(32) NOT NULL,
            before TEXT NOT NULL,
            created_at {t['ts']} NOT NULL)"""
    )


def m005_battles(db: Database) -> None:
    """Side-by-side comparisons and arena votes (blind or named), for the leaderboard."""
    t = _types(db)
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS battles (
            id {t['pk']},
            prompt TEXT NOT NULL,
            model_a VARCHAR(300) NOT NULL,
            model_b VARCHAR(300) NOT NULL,
            answer_a TEXT,
            answer_b TEXT,
            params TEXT,
            blind BOOLEAN NOT NULL DEFAULT FALSE,
            vote VARCHAR(16),
            category VARCHAR(100),
            user_name VARCHAR(100),
            created_at {t['ts']} NOT NULL,
            voted_at {t['ts']})"""
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS battles_voted ON battles (vote, created_at)")


def m006_eval_runs_and_results(db: Database) -> None:
    """Batch evaluations: the run (prompt set, models, judge, summary) and one result per example × model."""
    t = _types(db)
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS eval_runs (
            id {t['pk']},
            name VARCHAR(200) NOT NULL,
            status VARCHAR(16) NOT NULL,
            phase VARCHAR(16),
            models TEXT NOT NULL,
            judge VARCHAR(300),
            source VARCHAR(300) NOT NULL,
            dataset_version_id INTEGER REFERENCES dataset_versions (id) ON DELETE SET NULL,
            training_run_id INTEGER REFERENCES training_runs (id) ON DELETE SET NULL,
            params TEXT NOT NULL,
            examples TEXT NOT NULL,
            summary TEXT,
            mlflow_run_id VARCHAR(64),
            error TEXT,
            created_at {t['ts']} NOT NULL,
            finished_at {t['ts']})"""
    )
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS eval_results (
            id {t['pk']},
            eval_run_id INTEGER NOT NULL REFERENCES eval_runs (id) ON DELETE CASCADE,
            example INTEGER NOT NULL,
            model VARCHAR(300) NOT NULL,
            output TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER,
            latency_ms {t['float']},
            rouge_l {t['float']},
            bleu {t['float']},
            exact BOOLEAN,
            judge_outcome VARCHAR(16),
            judge_detail TEXT,
            UNIQUE (eval_run_id, example, model))"""
    )


def m007_history_search_and_lineage(db: Database) -> None:
    """History: time indexes for the timeline, full-text search over messages and chat titles (FTS5 on SQLite), and the chats
    a dataset row came from (lineage: adapter ← run ← dataset version ← source chats)."""
    migrator = SchemaMigrator.from_database(db)
    if "conversation_id" not in {c.name for c in db.get_columns("dataset_rows")}:
        migrate(migrator.add_column("dataset_rows", "conversation_id", IntegerField(null=True)))
    if "source_conversations" not in {c.name for c in db.get_columns("dataset_versions")}:
        migrate(migrator.add_column("dataset_versions", "source_conversations", TextField(null=True)))
    for table, column in (("training_runs", "created_at"), ("dataset_versions", "created_at"), ("battles", "created_at"),
                          ("eval_runs", "created_at"), ("conversations", "model")):
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS {table}_{column} ON {table} ({column})")
    if isinstance(db, PostgresqlDatabase):
        return  # PostgreSQL searches with ILIKE (storage.history): no FTS5 there
    # prefix indexes: every search word is a prefix term (Korean particles), and short prefixes would be slow.
    for table, column in (("messages", "content"), ("conversations", "title")):
        db.execute_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table}_fts USING fts5({column}, content='{table}', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 2', prefix='2 3 4')"
        )
        db.execute_sql(f"INSERT INTO {table}_fts({table}_fts) VALUES ('rebuild')")
    # Kept in step by triggers, so every writer (the chat engine, imports, deletes by cascade) is covered.
    db.execute_sql(
        "CREATE TRIGGER IF NOT EXISTS messages_fts_ai AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END"
    )
    db.execute_sql(
        "CREATE TRIGGER IF NOT EXISTS messages_fts_ad AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END"
    )
    db.execute_sql(
        "CREATE TRIGGER IF NOT EXISTS messages_fts_au AFTER UPDATE OF content ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); "
        "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END"
    )
    db.execute_sql(
        "CREATE TRIGGER IF NOT EXISTS conversations_fts_ai AFTER INSERT ON conversations BEGIN "
        "INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title); END"
    )
    db.execute_sql(
        "CREATE TRIGGER IF NOT EXISTS conversations_fts_ad AFTER DELETE ON conversations BEGIN "
        "INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.id, old.title); END"
    )
    db.execute_sql(
        "CREATE TRIGGER IF NOT EXISTS conversations_fts_au AFTER UPDATE OF title ON conversations BEGIN "
        "INSERT INTO conversations_fts(conversations_fts, rowid, title) VALUES ('delete', old.id, old.title); "
        "INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title); END"
    )


OWNED_TABLES = ("conversations", "battles", "datasets", "training_runs", "eval_runs")


def m008_users_api_keys_and_owners(db: Database) -> None:
    """Accounts (argon2 hashes, roles), hashed per-user API keys, and an owner on every person's rows.

    Existing rows keep owner_id NULL here; engines.accounts gives them to the first admin when one exists."""
    t = _types(db)
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS users (
            id {t['pk']},
            name VARCHAR(100) NOT NULL UNIQUE,
            password_hash TEXT,
            role VARCHAR(16) NOT NULL DEFAULT 'member',
            disabled BOOLEAN NOT NULL DEFAULT FALSE,
            created_at {t['ts']} NOT NULL)"""
    )
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS api_keys (
            id {t['pk']},
            user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            name VARCHAR(100) NOT NULL,
            prefix VARCHAR(16) NOT NULL,
            key_hash VARCHAR(64) NOT NULL UNIQUE,
            created_at {t['ts']} NOT NULL,
            last_used_at {t['ts']},
            revoked_at {t['ts']})"""
    )
    migrator = SchemaMigrator.from_database(db)
    for table in OWNED_TABLES:
        if "owner_id" not in {c.name for c in db.get_columns(table)}:
            migrate(migrator.add_column(table, "owner_id", IntegerField(null=True)))
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS {table}_owner_id ON {table} (owner_id)")
    if "source" not in {c.name for c in db.get_columns("conversations")}:
        # plain ALTER: peewee's NOT NULL path rebuilds the table, which the FTS triggers on conversations forbid
        db.execute_sql("ALTER TABLE conversations ADD COLUMN source VARCHAR(16) NOT NULL DEFAULT 'ui'")


def m009_preference_datasets_and_battle_judgements(db: Database) -> None:
    """A dataset's kind (chat | preference), and the verdicts an LLM judge gave on stored battles."""
    t = _types(db)
    if "kind" not in {c.name for c in db.get_columns("datasets")}:
        db.execute_sql("ALTER TABLE datasets ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'chat'")
    db.execute_sql(
        f"""CREATE TABLE IF NOT EXISTS battle_judgements (
            id {t['pk']},
            battle_id INTEGER NOT NULL REFERENCES battles (id) ON DELETE CASCADE,
            judge VARCHAR(300) NOT NULL,
            verdict VARCHAR(16) NOT NULL,
            detail TEXT,
            created_at {t['ts']} NOT NULL)"""
    )
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS battle_judgements_battle_judge ON battle_judgements (battle_id, judge)")


def m010_training_run_compute(db: Database) -> None:
    """Where a fine-tune runs: the job backend (local | ray) and the job's id there (a Ray submission id), so a restarted
    app asks the right backend about a run it did not start itself."""
    migrator = SchemaMigrator.from_database(db)
    have = {c.name for c in db.get_columns("training_runs")}
    ops = []
    if "compute" not in have:
        ops.append(migrator.add_column("training_runs", "compute", CharField(max_length=16, null=True)))
    if "remote_job_id" not in have:
        ops.append(migrator.add_column("training_runs", "remote_job_id", CharField(max_length=128, null=True)))
    if ops:
        migrate(*ops)


def m011_message_turns(db: Database) -> None:
    """Which turn a message belongs to (a user message's own id, kept by the question an edit puts in its place, and
    shared by every answer to it, regenerated ones too) and which question an answer answers (`reply_to`), so the kept
    versions of a turn can be listed and shown.

    Rows from before: a user message is its own turn and an answer joins the user message before it (a regenerated
    answer becomes a version of its question; an edited question stays a turn of its own)."""
    have = {c.name for c in db.get_columns("messages")}
    if "reply_to" not in have:
        db.execute_sql("ALTER TABLE messages ADD COLUMN reply_to INTEGER")
        db.execute_sql(
            "UPDATE messages SET reply_to = (SELECT MAX(u.id) FROM messages u WHERE u.conversation_id = messages.conversation_id"
            " AND u.role = 'user' AND u.id < messages.id) WHERE role <> 'user'")
    if "turn" not in have:
        db.execute_sql("ALTER TABLE messages ADD COLUMN turn INTEGER")
        db.execute_sql("UPDATE messages SET turn = id WHERE role = 'user'")
        db.execute_sql("UPDATE messages SET turn = reply_to WHERE role <> 'user'")
    db.execute_sql("CREATE INDEX IF NOT EXISTS messages_conversation_turn ON messages (conversation_id, turn)")


MIGRATIONS: list[tuple[int, Callable[[Database], None]]] = [
    (1, m001_conversations_and_messages),
    (2, m002_message_history_and_indexes),
    (3, m003_training_runs_and_models),
    (4, m004_datasets_and_versions),
    (5, m005_battles),
    (6, m006_eval_runs_and_results),
    (7, m007_history_search_and_lineage),
    (8, m008_users_api_keys_and_owners),
    (9, m009_preference_datasets_and_battle_judgements),
    (10, m010_training_run_compute),
    (11, m011_message_turns),
]


def applied_migrations(db: Database) -> set[int]:
    if not db.table_exists("schema_migrations"):
        return set()
    return {row[0] for row in db.execute_sql("SELECT id FROM schema_migrations").fetchall()}


def apply_migrations(db: Database, *, upto: int | None = None) -> list[str]:
    """Apply pending migrations in order (optionally stopping after `upto`); returns the names applied."""
    t = _types(db)
    db.execute_sql(
        f"CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, applied_at {t['ts']} NOT NULL)"
    )
    done = applied_migrations(db)
    applied = []
    for number, step in MIGRATIONS:
        if upto is not None and number > upto:
            break
        if number in done:
            continue
        with db.atomic():
            step(db)
            db.execute_sql(
                "INSERT INTO schema_migrations (id, name, applied_at) VALUES (%s, %s, %s)"
                if isinstance(db, PostgresqlDatabase)
                else "INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)",
                (number, step.__name__, utcnow()),
            )
        applied.append(step.__name__)
    return applied
