"""Job ids chosen by the client (``dispatch(job, job_id="order-42")``): the rules every driver shares.

A dispatch with a ``job_id`` stores the job only if no job with that id is stored (pending,
reserved or dead) and the id was not dispatched in the last :data:`REMEMBER_JOB_IDS` seconds (a
completed job is gone, but its id is remembered that long). Otherwise nothing is stored and the
dispatch returns the id as if it had stored it: a retry after a lost reply is safe. A different job
(another type or other data, compared by :func:`fingerprint`) under a remembered id raises
:class:`~khadem_lab.errors.JobIdConflict`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from ..errors import KhademLabError, SerializationError
from ..job import QueueJob
from ..serialization import encode_payload_json

#: How long (seconds, on the driver's clock) an id given to dispatch is remembered after that
#: dispatch, also once its job has completed. A job that is still stored keeps its id taken longer.
#: A driver's ``remember_job_ids`` attribute overrides it.
REMEMBER_JOB_IDS = 24 * 3600.0
#: Letters, digits and ``. _ - : @ / + =``; 1 to 200 characters; not digits only (the ids a store
#: chooses by itself are digits only, so a client's id never takes one of theirs).
MAX_JOB_ID_LENGTH = 200
_ALLOWED = re.compile(rf"[A-Za-z0-9._\-:@/+=]{{1,{MAX_JOB_ID_LENGTH}}}")


def check_job_id(job_id: object, job: object) -> str:
    """``job_id`` if it is a usable client id; else a KhademLabError naming it and the rule."""
    if not isinstance(job_id, str) or not _ALLOWED.fullmatch(job_id) or job_id.isdigit():
        raise KhademLabError(
            f"dispatch of {type(job).__name__}: job_id must be a string of 1 to {MAX_JOB_ID_LENGTH} "
            "letters, digits and . _ - : @ / + = that is not digits only (those are the ids the "
            f"queue chooses itself), got {job_id!r}; e.g. job_id='order-42'"
        )
    return job_id


def check_job_ids(job_ids: object, jobs: Sequence[QueueJob]) -> list[str]:
    """One usable, distinct id per job, in order."""
    if isinstance(job_ids, (str, bytes)) or not isinstance(job_ids, Sequence):
        raise KhademLabError(
            f"dispatch_batch: job_ids must be a list of strings, one per job, got {job_ids!r}"
        )
    if len(job_ids) != len(jobs):
        raise KhademLabError(
            f"dispatch_batch: job_ids has {len(job_ids)} id(s) for {len(jobs)} job(s); give one id per job"
        )
    ids = [check_job_id(job_id, job) for job_id, job in zip(job_ids, jobs, strict=True)]
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            raise KhademLabError(f"dispatch_batch: job_id {job_id!r} is given twice; each job needs its own")
        seen.add(job_id)
    return ids


def fingerprint(job: QueueJob, type_name: str, payload_json: str | None) -> str:
    """What makes two dispatches "the same job": its type and its data (not its delay or queue).
    ``payload_json``: the JSON a serializing driver stores; None: computed here (a job an
    in-process driver keeps as an object and that has no JSON form counts by its type only)."""
    if payload_json is None:
        try:
            payload_json = encode_payload_json(job)[1]
        except SerializationError:
            payload_json = "?"
    text = json.dumps([type_name, payload_json])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
