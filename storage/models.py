"""Peewee models. The schema itself is created by storage.migrations, never by create_tables."""

from __future__ import annotations

import datetime as dt

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from storage.db import database


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class User(BaseModel):
    """A person who logs in; `password_hash` is argon2 (None: cannot log in, e.g. the local owner without AUTH)."""

    id = AutoField()
    name = CharField(max_length=100, unique=True)
    password_hash = TextField(null=True)
    role = CharField(max_length=16, default="member")  # admin | member
    disabled = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "users"


class ApiKey(BaseModel):
    """A per-user API key, stored only as its SHA-256; `prefix` (the first characters) identifies it in lists."""

    id = AutoField()
    user = ForeignKeyField(User, backref="api_keys", on_delete="CASCADE", column_name="user_id")
    name = CharField(max_length=100)
    prefix = CharField(max_length=16)
    key_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    class Meta:
        table_name = "api_keys"


class Conversation(BaseModel):
    id = AutoField()
    owner_id = IntegerField(null=True, index=True)  # users.id; every conversation belongs to one person
    source = CharField(max_length=16, default="ui")  # ui | api
    title = CharField(max_length=200, default="New chat")
    model = CharField(max_length=300, null=True)
    system_prompt = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "conversations"


class Message(BaseModel):
    id = AutoField()
    conversation = ForeignKeyField(Conversation, backref="messages", on_delete="CASCADE", column_name="conversation_id")
    role = CharField(max_length=16)
    content = TextField(default="")
    model = CharField(max_length=300, null=True)
    params = TextField(null=True)  # JSON of the sampling parameters used
    ttft_ms = FloatField(null=True)
    prompt_tokens = IntegerField(null=True)
    completion_tokens = IntegerField(null=True)
    tok_per_s = FloatField(null=True)
    duration_ms = FloatField(null=True)
    finish_reason = CharField(max_length=32, null=True)  # stop | length | stopped | error | streaming | interrupted | given (sent back by an API client)
    error = TextField(null=True)
    feedback = IntegerField(default=0)  # -1 down, 0 none, 1 up
    active = BooleanField(default=True)  # False once regenerated or edited away; kept, never deleted
    turn = IntegerField(null=True)  # the turn's first user message id: shared by its edited questions and every answer
    reply_to = IntegerField(null=True)  # an answer's question (the user message active when it was asked for)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "messages"


class ModelEntry(BaseModel):
    """A model users can pick: a base (folder or hub id), an adapter (folder + parent base) or an external endpoint."""

    id = AutoField()
    name = CharField(max_length=200, unique=True)
    kind = CharField(max_length=16)  # base | adapter | external
    path = TextField(null=True)
    url = TextField(null=True)
    parent = CharField(max_length=300, null=True, index=True)
    run_id = IntegerField(null=True)  # the training run that made an adapter
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "models"


class TrainingRun(BaseModel):
    """One fine-tuning job; survives the browser and the app (pid + heartbeat + events offset)."""

    id = AutoField()
    owner_id = IntegerField(null=True, index=True)  # users.id: changed only by its owner or an admin
    name = CharField(max_length=200, unique=True)  # also the adapter's served name
    base_model = CharField(max_length=300)
    dataset = TextField()
    dataset_version_id = IntegerField(null=True)
    method = CharField(max_length=16)
    spec = TextField()  # JSON of the TrainSpec
    status = CharField(max_length=16, index=True)  # queued | running | completed | failed | cancelled | interrupted
    run_dir = TextField()
    pid = IntegerField(null=True)
    pid_started = CharField(max_length=32, null=True)  # /proc start time: a reused pid is not our worker
    heartbeat_at = DateTimeField(null=True)
    backend = CharField(max_length=32, null=True)  # the training backend the worker chose (transformers | unsloth)
    compute = CharField(max_length=16, null=True)  # the job backend it runs on (local | ray); None: local (older rows)
    remote_job_id = CharField(max_length=128, null=True)  # the job's id on that backend (a Ray submission id)
    step = IntegerField(default=0)
    total_steps = IntegerField(null=True)
    events_offset = IntegerField(default=0)
    mlflow_run_id = CharField(max_length=64, null=True)
    metrics = TextField(null=True)  # JSON summary: last loss, final metrics
    adapter_path = TextField(null=True)
    model = ForeignKeyField(ModelEntry, null=True, on_delete="SET NULL", column_name="model_id")
    error = TextField(null=True)
    cancel_requested = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "training_runs"


class Dataset(BaseModel):
    id = AutoField()
    owner_id = IntegerField(null=True, index=True)  # users.id: changed only by its owner or an admin
    name = CharField(max_length=200, unique=True)
    source_format = CharField(max_length=32, null=True)  # the layout it was imported from
    kind = CharField(max_length=16, default="chat")  # chat (messages) | preference (prompt, chosen, rejected)
    note = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "datasets"


class DatasetVersion(BaseModel):
    """An immutable saved state of a dataset: a JSONL file of OpenAI messages that fine-tunes reference."""

    id = AutoField()
    dataset = ForeignKeyField(Dataset, backref="versions", on_delete="CASCADE", column_name="dataset_id")
    version = IntegerField()
    path = TextField()
    content_hash = CharField(max_length=64)
    row_count = IntegerField()
    format = CharField(max_length=32, default="openai")
    parent = ForeignKeyField("self", null=True, on_delete="SET NULL", column_name="parent_id")
    note = TextField(null=True)
    source_conversations = TextField(null=True)  # JSON list of the chat ids its rows came from (lineage)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "dataset_versions"


class DatasetRow(BaseModel):
    """One row of a dataset's working copy; `search` is the lower-cased text for server-side search."""

    id = AutoField()
    dataset = ForeignKeyField(Dataset, backref="rows", on_delete="CASCADE", column_name="dataset_id")
    messages = TextField()  # JSON list of {"role", "content"}
    category = CharField(max_length=100, null=True)
    split = CharField(max_length=8, null=True)  # train | eval | None (not split yet)
    search = TextField(default="")
    tokens = IntegerField(null=True)
    conversation_id = IntegerField(null=True)  # the chat this row came from (lineage), if any

    class Meta:
        table_name = "dataset_rows"


class DatasetEdit(BaseModel):
    """Undo log: the affected rows as they were before one change."""

    id = AutoField()
    dataset = ForeignKeyField(Dataset, on_delete="CASCADE", column_name="dataset_id")
    action = CharField(max_length=32)
    before = TextField()  # JSON: [{"id", "present", "messages", "category", "split", "tokens"}]
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "dataset_edits"


class Battle(BaseModel):
    """One comparison of two models on one prompt; `vote` is a | b | tie | both_bad once a person voted."""

    id = AutoField()
    owner_id = IntegerField(null=True, index=True)  # users.id: changed only by its owner or an admin
    prompt = TextField()
    model_a = CharField(max_length=300)
    model_b = CharField(max_length=300)
    answer_a = TextField(null=True)
    answer_b = TextField(null=True)
    params = TextField(null=True)
    blind = BooleanField(default=False)
    vote = CharField(max_length=16, null=True)
    category = CharField(max_length=100, null=True)
    user_name = CharField(max_length=100, null=True)
    created_at = DateTimeField(default=utcnow)
    voted_at = DateTimeField(null=True)

    class Meta:
        table_name = "battles"


class BattleJudgement(BaseModel):
    """An LLM judge's verdict on a stored battle (a | b | tie | error), judged in both orders like batch evaluations."""

    id = AutoField()
    battle = ForeignKeyField(Battle, backref="judgements", on_delete="CASCADE", column_name="battle_id")
    judge = CharField(max_length=300)
    verdict = CharField(max_length=16)
    detail = TextField(null=True)  # JSON: the judge's raw outputs, or why it failed
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "battle_judgements"


class EvalRun(BaseModel):
    """One batch evaluation: which models answered which prompt set, judged by whom; `summary` holds the scores."""

    id = AutoField()
    owner_id = IntegerField(null=True, index=True)  # users.id: changed only by its owner or an admin
    name = CharField(max_length=200)
    status = CharField(max_length=16, default="queued")  # queued | running | completed | failed | cancelled | interrupted
    phase = CharField(max_length=16, null=True)  # generate | judge | score | log
    models = TextField()  # JSON list; the first is the judge's baseline
    judge = CharField(max_length=300, null=True)
    source = CharField(max_length=300)
    dataset_version_id = IntegerField(null=True)
    training_run_id = IntegerField(null=True)
    params = TextField()
    examples = TextField()  # JSON list of {messages, reference, category}: the exact prompt set, so a resume is exact
    summary = TextField(null=True)
    mlflow_run_id = CharField(max_length=64, null=True)
    error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "eval_runs"


class EvalResult(BaseModel):
    """One model's answer to one example, its reference scores and (for non-baseline models) the judge's outcome."""

    id = AutoField()
    eval_run = ForeignKeyField(EvalRun, backref="results", on_delete="CASCADE", column_name="eval_run_id")
    example = IntegerField()
    model = CharField(max_length=300)
    output = TextField(null=True)
    error = TextField(null=True)
    attempts = IntegerField(default=0)
    completion_tokens = IntegerField(null=True)
    latency_ms = FloatField(null=True)
    rouge_l = FloatField(null=True)
    bleu = FloatField(null=True)
    exact = BooleanField(null=True)
    judge_outcome = CharField(max_length=16, null=True)  # win | loss | tie | error (vs the baseline), None for the baseline
    judge_detail = TextField(null=True)

    class Meta:
        table_name = "eval_results"
