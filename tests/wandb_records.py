"""Reads an offline W&B run back from its transaction log (``run-<id>.wandb``), as `wandb sync`
would replay it: the records are W&B's own protobufs, framed as in LevelDB's log format."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024  # the log is written in blocks of this size
FILE_HEADER = 7  # ":W&B", a magic number and a version
CHUNK_HEADER = 7  # checksum (4 bytes), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    """Every record in the file, in order (checksums are not verified)."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    found, pending, pos = [], b"", FILE_HEADER
    while pos + CHUNK_HEADER <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        pos += CHUNK_HEADER
        if kind == 0:  # zeroed preallocated space: the end of what was written
            break
        pending += data[pos : pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


@dataclass
class OfflineRun:
    """What a W&B run file holds, in plain values (nested keys as nested dicts)."""

    run: wandb_internal_pb2.RunRecord | None = None
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # name or glob -> step metric ("" if none)
    history: list[dict] = field(default_factory=list)  # rows of logged values
    summary: dict = field(default_factory=dict)


def _update(values: dict, items) -> dict:
    """`values` updated with W&B's key/value items (a `nested_key` is a path into dicts)."""
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        inner = values
        for name in path[:-1]:
            inner = inner.setdefault(name, {})
        inner[path[-1]] = json.loads(item.value_json)
    return values


def read_run(folder: str | Path) -> OfflineRun:
    """The run in an ``offline-run-*`` folder."""
    (path,) = Path(folder).glob("run-*.wandb")
    run = OfflineRun()
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run = record.run
            _update(run.config, record.run.config.update)
        elif kind == "config":
            _update(run.config, record.config.update)
        elif kind == "metric":  # a later definition of the same name or glob wins, as in W&B
            run.metrics[record.metric.name or record.metric.glob_name] = record.metric.step_metric
        elif kind == "history":
            run.history.append(_update({}, record.history.item))
        elif kind == "summary":
            _update(run.summary, record.summary.update)
    return run
