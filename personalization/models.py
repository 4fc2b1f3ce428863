"""Database tables of the app.

``Event`` is the append-only log every later stage learns from. Rows are never updated except to link an
anonymous visitor's history to the user who signs in (identity stitching) and to erase a person on request.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models


class Event(models.Model):
    """One interaction: a view, click, add-to-cart, purchase, impression, ..."""

    class Source(models.TextChoices):
        MIDDLEWARE = "middleware", "Middleware"
        TRACKER = "tracker", "JavaScript tracker"
        API = "api", "REST API"
        PYTHON = "python", "Python track()"
        SEGMENT = "segment", "Segment-compatible endpoint"
        IMPORT = "import", "Import"

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=32)
    item_key = models.CharField(max_length=100, blank=True, default="")
    visitor_id = models.CharField(max_length=64, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
        db_index=False,  # the (user, occurred_at) index serves user lookups; each index slows ingestion
    )
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    recommendation_id = models.CharField(max_length=64, blank=True, default="")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    context = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["occurred_at"], name="pers_event_time"),
            models.Index(fields=["visitor_id", "occurred_at"], name="pers_event_visitor"),
            models.Index(fields=["user", "occurred_at"], name="pers_event_user"),
            models.Index(fields=["item_key", "occurred_at"], name="pers_event_item"),
            models.Index(fields=["event_type", "occurred_at"], name="pers_event_type"),
            models.Index(
                fields=["recommendation_id"], name="pers_event_rec",
                condition=~models.Q(recommendation_id=""),
            ),
        ]
        ordering = ["-occurred_at"]

    def __str__(self) -> str:
        who = f"user {self.user_id}" if self.user_id else f"visitor {self.visitor_id[:8]}"
        return f"{self.event_type} {self.item_key or '-'} by {who} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class VisitorLink(models.Model):
    """A visitor id (one browser) known to belong to a user, recorded at sign-in.

    Events buffered or sent later from that browser are attributed to the user, so a person's history is one
    history across devices and across the moment they signed in.
    """

    visitor_id = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    linked_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"visitor {self.visitor_id[:8]} -> user {self.user_id}"


class ModelVersion(models.Model):
    """One trained recommender system: what it was trained on, how good it is, where its artifact lives.

    Exactly one version is ``live`` at a time (a partial unique constraint enforces it); promotion and rollback
    swap it inside a transaction so serving never sees zero or two live versions.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        LIVE = "live", "Live"
        RETIRED = "retired", "Retired"

    family = models.CharField(max_length=32, default="system", help_text="system = two-stage ensemble")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    tuning = models.JSONField(default=dict, blank=True, help_text="search space, trials and best parameters")
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    cutoff = models.DateTimeField(null=True, blank=True, help_text="validation window starts here")
    metrics = models.JSONField(default=dict, blank=True, help_text="validation-window metrics per model")
    test_metrics = models.JSONField(default=dict, blank=True, help_text="metrics on the later test window")
    insights = models.JSONField(
        default=dict, blank=True,
        help_text='computed at training: "shap" (mean |SHAP| per ranker feature) and "bias" (quality per visitor '
                  "segment, catalogue exposure)",
    )
    data_quality = models.JSONField(default=dict, blank=True)
    artifact = models.CharField(max_length=255, blank=True, help_text="path in the artifact storage (ARTIFACT_STORAGE)")
    artifact_sha256 = models.CharField(
        max_length=64, blank=True,
        help_text="sha256 of the stored artifact, checked before every unpack (empty: saved before the check existed)",
    )
    stage = models.CharField(max_length=64, blank=True)
    progress = models.FloatField(default=0.0)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    load_error = models.TextField(
        blank=True, help_text="why serving could not load the artifact last time it tried (cleared by a good load)",
    )
    load_failed_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True,
        help_text="last sign of life of the training run; a stale run is marked failed",
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    update_revision = models.PositiveIntegerField(
        default=0, help_text="updates folded in since training (update_models); 0: as trained",
    )
    update_artifact = models.CharField(
        max_length=255, blank=True, help_text="path of the cumulative update delta in the artifact storage",
    )
    update_watermark = models.BigIntegerField(
        null=True, blank=True, help_text="id of the last event folded in by update_models",
    )
    update_events = models.PositiveIntegerField(default=0, help_text="events folded in since training")
    updated_at = models.DateTimeField(null=True, blank=True, help_text="when the last update was published")
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the version that was live before this one went live (for rollback)",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="live"), name="pers_one_live_version"
            ),
        ]
        permissions = [  # checked by the admin's actions and buttons and by the staff API
            ("train_modelversion", "Can train model versions"),
            ("promote_modelversion", "Can promote model versions"),
            ("rollback_modelversion", "Can roll back the live model version"),
            ("cancel_modelversion", "Can cancel training of model versions"),
        ]

    def __str__(self) -> str:
        return f"v{self.pk} {self.family} ({self.status})"

    @staticmethod
    def token_of(pk: int, created_at: datetime) -> str:
        """Identifies one version row for good, on this machine and across sites: ids are reused after a database
        is flushed, and two sites (or test databases) each have a version 19; the creation time tells them apart."""
        return f"{pk}@{created_at.timestamp():.6f}"

    @property
    def token(self) -> str:
        """:meth:`token_of` this row: the key of its loaded system, cache entries and work folders."""
        return self.token_of(self.pk, self.created_at)

    @property
    def score(self) -> float | None:
        """The promotion metric on the test window (see PERSONALIZATION['PROMOTION_METRIC'])."""
        from personalization.conf import settings as psettings

        value = (self.test_metrics.get("system") or {}).get(psettings.PROMOTION_METRIC)
        return float(value) if value is not None else None


class RecommendationLog(models.Model):
    """One list of recommendations served: what, to whom, in which slot, by which model version.

    Impressions, clicks and purchases carry its id (``recommendation_id``), so outcomes are attributed to the
    list and the model that produced it.
    """

    id = models.CharField(max_length=32, primary_key=True)
    subject = models.CharField(max_length=80, help_text="u:<user id> or v:<visitor id>")
    slot = models.CharField(max_length=64, blank=True, default="")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", db_constraint=False)
    items = models.JSONField(default=list, help_text='[{"item": key, "score": float, "reason": str}, ...]')
    fallback = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)
    experiment = models.ForeignKey("Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   db_constraint=False, db_index=False,
                                   help_text="the A/B test the subject was in when the list was served")
    arm = models.CharField(max_length=1, blank=True, default="", help_text='"A" or "B" within ``experiment``')

    class Meta:
        indexes = [
            models.Index(fields=["subject", "created_at"], name="pers_reclog_subject"),
            models.Index(fields=["experiment", "created_at"], name="pers_reclog_experiment",
                         condition=models.Q(experiment__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.id[:8]} {self.slot or '-'} for {self.subject[:10]}"


class Experiment(models.Model):
    """An A/B test between two model versions: a sticky share of subjects is served by version B.

    At most one experiment runs per slot, and one for every slot (``slot`` empty) excludes any other
    (``personalization.monitoring.experiments.validate_start``; a partial unique constraint backs the per-slot rule).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        ENDED = "ended", "Ended"

    class Metric(models.TextChoices):
        CTR = "ctr", "Click-through rate (clicks / impressions)"
        CONVERSION = "conversion", "Conversion (visitors with an attributed purchase / visitors)"
        REVENUE = "revenue", "Revenue per visitor"

    name = models.CharField(max_length=120)
    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+",
                                  help_text="the control, usually the live version")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+",
                                  help_text="the challenger")
    share_b = models.FloatField(default=0.5, help_text="share of subjects served by version B (0 < share < 1)")
    slot = models.CharField(max_length=64, blank=True, default="", help_text="only this slot (empty: every slot)")
    minimum_detectable_effect = models.FloatField(
        default=0.05, help_text="smallest relative lift of the primary metric worth detecting (0.05 = +5%)")
    primary_metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.CTR)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    started_at = models.DateTimeField(auto_now_add=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    promoted = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="the version promoted when the experiment ended (empty: none)")
    outcome = models.TextField(blank=True, help_text="what ending it decided, in words")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["slot"], condition=models.Q(status="running"),
                                    name="pers_one_running_experiment_per_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version_a_id} vs v{self.version_b_id}, {self.status})"


class ListDailyStat(models.Model):
    """Outcomes of served lists per day x slot x model version x A/B arm x exploration x position.

    Written by ``personalization.aggregate_list_stats`` (``monitoring.attribution``); a day's rows are always
    recomputed whole, so re-running a day gives the same numbers. ``lists``: lists with an item at this position;
    ``visitors``: distinct subjects among them (do not add them up across positions).
    """

    day = models.DateField()
    slot = models.CharField(max_length=64, blank=True, default="")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", db_constraint=False)
    experiment = models.ForeignKey(Experiment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   db_constraint=False)
    arm = models.CharField(max_length=1, blank=True, default="")
    explored = models.BooleanField(default=False, help_text="the position was filled by exploration")
    position = models.PositiveSmallIntegerField(help_text="0 = first item of the list")
    lists = models.PositiveIntegerField(default=0)
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0)
    revenue = models.FloatField(default=0.0)
    visitors = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "slot", "position"]
        indexes = [models.Index(fields=["day", "slot"], name="pers_liststat_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.slot or '-'} v{self.model_version_id} #{self.position}"

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def conversion(self) -> float | None:
        return self.purchases / self.lists if self.lists else None


class StatWatermark(models.Model):
    """How far an incremental aggregation has read: the last ``Event.id`` it counted."""

    name = models.CharField(max_length=64, primary_key=True)
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_event_id}"


class ContentBlock(models.Model):
    """A page slot whose content is chosen per visitor among variants (``{% personalized_block %}``)."""

    slot = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=120, blank=True)
    active = models.BooleanField(default=True)
    control_share = models.FloatField(default=0.1, help_text="share of visitors who get a uniformly random variant")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name or self.slot


class Variant(models.Model):
    """One content option of a block, with optional targeting; HTML is used when the template defines none."""

    class Audience(models.TextChoices):
        ANY = "any", "Anyone"
        NEW = "new", "New visitors"
        RETURNING = "returning", "Returning visitors"

    block = models.ForeignKey(ContentBlock, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=64)
    html = models.TextField(blank=True, help_text="content rendered for this variant (trusted staff input)")
    category = models.CharField(max_length=64, blank=True, help_text="serves visitors who like this category")
    segment = models.CharField(max_length=64, blank=True)
    device = models.CharField(max_length=16, blank=True, help_text="mobile, tablet, desktop or empty for all")
    country = models.CharField(max_length=2, blank=True)
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.ANY)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["block", "key"], name="pers_variant_unique_key")]

    def __str__(self) -> str:
        return f"{self.block.slot}:{self.key}"


class VariantStat(models.Model):
    """Impressions and clicks per (slot, variant key), aggregated from events for the bandit."""

    slot = models.CharField(max_length=64)
    variant = models.CharField(max_length=64)
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["slot", "variant"], name="pers_variantstat_unique")]

    def __str__(self) -> str:
        return f"{self.slot}:{self.variant} {self.clicks}/{self.impressions}"


class NotificationRule(models.Model):
    """When to send whom what, through which channel, how often at most."""

    class Trigger(models.TextChoices):
        RECOMMENDED = "recommended_items", "Recommended items"
        BACK_IN_STOCK = "back_in_stock", "Back in stock"
        ABANDONED_CART = "abandoned_cart", "Abandoned cart"

    name = models.CharField(max_length=120)
    trigger = models.CharField(max_length=32, choices=Trigger.choices)
    channel = models.CharField(max_length=32, default="email", help_text="a key of NOTIFICATION_CHANNELS")
    threshold = models.FloatField(default=0.5, help_text="minimum engagement score (0..1) to send")
    subject = models.CharField(max_length=200, default="Picked for you")
    template = models.CharField(max_length=200, default="personalization/notifications/recommended",
                                help_text="template prefix: <prefix>.txt and <prefix>.html")
    max_per_week = models.PositiveSmallIntegerField(default=2)
    quiet_start = models.PositiveSmallIntegerField(default=21, help_text="hour (user's zone) quiet hours begin")
    quiet_end = models.PositiveSmallIntegerField(default=8, help_text="hour (user's zone) quiet hours end")
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Notification(models.Model):
    """One message to one user; the idempotency key makes a retried task never send twice."""

    class Status(models.TextChoices):
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(NotificationRule, null=True, blank=True, on_delete=models.SET_NULL)
    channel = models.CharField(max_length=32)
    idempotency_key = models.CharField(max_length=128, unique=True)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENT)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="pers_notification_user")]

    def __str__(self) -> str:
        return f"{self.subject} -> {self.user_id} ({self.status})"


class NotificationPreference(models.Model):
    """A user's opt-out and time zone for notifications."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    opted_out = models.BooleanField(default=False)
    timezone = models.CharField(max_length=64, blank=True)
    opt_out_nonce = models.CharField(
        max_length=32, unique=True, null=True, blank=True, editable=False,
        help_text="random id signed into the opt-out link (the link names no user)",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {'opted out' if self.opted_out else 'subscribed'}"


class ForgetRequest(models.Model):
    """The audit record of one erasure (``personalization.privacy.forget``), without personal data.

    The subjects are kept only as keyed hashes (HMAC with the secret key): serving hides them from model versions
    trained before the erasure, and an auditor can check that a given person was forgotten, but the row names
    nobody.
    """

    subject_hash = models.CharField(max_length=64, db_index=True,
                                    help_text="keyed hash of the subject asked for (u:<user id> or v:<visitor id>)")
    subject_hashes = models.JSONField(default=list, blank=True,
                                      help_text="keyed hashes of every subject id of the person (user and visitors)")
    counts = models.JSONField(default=dict, blank=True, help_text="rows deleted per table")
    channel = models.CharField(max_length=16, help_text="command, admin, api, user_deleted or python")
    requested_by = models.CharField(max_length=150, blank=True,
                                    help_text="the staff member who asked (admin), else who the channel names")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"forget {self.subject_hash[:12]} via {self.channel} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class IngestionCounter(models.Model):
    """One day's count of what tracking took in or left out (accepted, duplicates, bots, rate-limited, ...).

    The live counters are in the cache (``tracking/metrics.py``, kept 8 days); the
    ``personalization.persist_ingestion_counters`` task copies them here, so audits and exports see the history.
    """

    day = models.DateField()
    name = models.CharField(max_length=32)
    count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "name"], name="pers_counter_day_name")]
        ordering = ["-day", "name"]

    def __str__(self) -> str:
        return f"{self.day} {self.name} = {self.count}"


class AuditReport(models.Model):
    """The result of one data audit (``monitoring/audit.py``): each check's status, numbers and thresholds."""

    class Status(models.TextChoices):
        PASS = "pass", "Pass"
        WARN = "warn", "Warn"
        FAIL = "fail", "Fail"

    created_at = models.DateTimeField(db_index=True)
    days = models.PositiveSmallIntegerField(help_text="length of the audited period in days")
    baseline_days = models.PositiveSmallIntegerField(help_text="days before the period that give the usual range")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices)
    checks = models.JSONField(default=list, help_text="one entry per check: name, status, summary, numbers, "
                                                      "thresholds, details")
    trigger = models.CharField(max_length=16, blank=True, help_text="command, schedule, admin or python")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"audit {self.created_at:%Y-%m-%d %H:%M} {self.status}"


class DriftDetection(models.Model):
    """One time the traffic or the live model's quality moved away from what the live version learned from.

    Written by ``personalization.monitoring.drift`` (beat ``personalization.detect_drift``) with the evidence staff
    need to judge it: which statistic moved, by how much, between which windows, and the retrain it triggered.
    """

    class Detector(models.TextChoices):
        ADWIN = "adwin", "ADWIN (click-through stream)"
        PSI = "psi", "Population stability index"
        KS = "ks", "Kolmogorov-Smirnov"
        METRIC = "metric", "Offline metric drop"

    detector = models.CharField(max_length=16, choices=Detector.choices)
    subject = models.CharField(max_length=100, help_text="what moved: slot:<name>, event_type, item, category, ...")
    statistic = models.CharField(max_length=32, help_text="ctr, psi, ks, or the metric's name (e.g. ndcg@10)")
    value = models.FloatField(help_text="the statistic now (for ADWIN: the click-through rate after the change)")
    threshold = models.FloatField()
    baseline_start = models.DateTimeField(null=True, blank=True)
    baseline_end = models.DateTimeField(null=True, blank=True)
    recent_start = models.DateTimeField(null=True, blank=True)
    recent_end = models.DateTimeField(null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True, help_text="the numbers behind the detection")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", help_text="the live version when it was detected")
    detected_at = models.DateTimeField(db_index=True)
    retrain = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="the version this detection queued (DRIFT_RETRAIN)")
    acknowledged = models.BooleanField(default=False, db_index=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"{self.get_detector_display()} on {self.subject}: {self.statistic} {self.value:.4g}"


class DriftState(models.Model):
    """The running state of one incremental detector (ADWIN of one slot): river's pickled detector and how far
    through the event table it has read. Written and read only by ``personalization.monitoring.drift``."""

    key = models.CharField(max_length=100, primary_key=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", db_constraint=False)
    state = models.BinaryField(help_text="pickle of river.drift.ADWIN (written by this app only)")
    last_event_id = models.BigIntegerField(default=0)
    seen = models.BigIntegerField(default=0, help_text="impressions read since the state started")
    clicks = models.BigIntegerField(default=0)
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.seen} impressions"


class RuntimeControl(models.Model):
    """Switches staff flip on the dashboard, honoured without a restart (one row; see ``personalization.runtime``).

    ``exploration_paused``: serving explores no position in any slot. ``event_weights``: training weights per event
    type laid over the settings' (``EVENT_TYPES``) by the next training run, which records them in its params.
    """

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON, editable=False)
    exploration_paused = models.BooleanField(default=False, help_text="no position of any slot is explored")
    event_weights = models.JSONField(
        default=dict, blank=True, help_text="event type -> training weight, laid over EVENT_TYPES (empty: settings)",
    )
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "runtime control"

    def __str__(self) -> str:
        return f"exploration {'paused' if self.exploration_paused else 'on'}, {len(self.event_weights)} weight(s) set"


class Dashboard(RuntimeControl):
    """The admin dashboard's entry in the admin (``/admin/personalization/dashboard/``): a proxy without a table."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
