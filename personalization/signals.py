"""The app's own signals: how a lower layer tells upper ones about a change without importing them.

Receivers are connected in ``PersonalizationConfig.ready()`` (DESIGN rule 11).
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent by the registry once the transaction that made a version live has committed; ``version_id`` is the new
#: live version. Serving publishes it to every process; the tasks module queues the precompute.
model_promoted = Signal()

#: Sent by the training service once the transaction that queued a version has committed, with ``version_id``,
#: ``until`` (ISO 8601 or None), ``models`` and ``tune``: the tasks module hands the run to a Celery worker.
training_queued = Signal()

#: Sent by the training service once the transaction that cancelled queued versions has committed, with
#: ``task_ids`` (their Celery task ids): the tasks module revokes them.
training_cancelled = Signal()

#: Sent by the audit service when staff ask for a data audit now, with ``days`` and ``trigger``: the tasks module
#: hands it to a Celery worker (or a background thread of this process); its receiver returns the task id or None.
audit_requested = Signal()

#: Sent by the update service once a new update revision of the live version is stored (``version_id``,
#: ``revision``, ``system``: the updated system, served at once by the sending process); serving publishes it to
#: every process.
model_updated = Signal()
