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


class Conversation(BaseModel):
    id = AutoField()
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
    finish_reason = CharField(max_length=32, null=True)  # stop | length | stopped | error | streaming
    error = TextField(null=True)
    feedback = IntegerField(default=0)  # -1 down, 0 none, 1 up
    active = BooleanField(default=True)  # False once regenerated or edited away; kept, never deleted
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "messages"
