"""remediate_dlq: the beat job that replays dead letters (:mod:`mutt_app.forwarding.remediation`)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from mutt_app.forwarding.remediation import run_remediation
from mutt_app.names import REMEDIATE_DLQ_TASK
from mutt_app.runtime import RuntimeTask


@shared_task(bind=True, name=REMEDIATE_DLQ_TASK, ignore_result=True)
def remediate_dlq(self: RuntimeTask) -> dict[str, Any]:
    """Replay due dead letters (see :mod:`mutt_app.forwarding.remediation`)."""
    report = run_remediation(self.runtime, self.app)
    return report.__dict__
