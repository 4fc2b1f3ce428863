"""The app's configuration: connects every receiver once the app registry is ready (DESIGN rule 11)."""

from django.apps import AppConfig, apps


class PersonalizationConfig(AppConfig):
    name = "personalization"
    verbose_name = "Personalization"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery import signals as celery_signals
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.core.signals import setting_changed
        from django.db.models.signals import post_delete, post_migrate, post_save, pre_delete

        from personalization import (  # noqa: F401
            checks,
            conf,
            near_cache,
            periodic_tasks,
            privacy,
            ratelimit,
            serving,
            signals,
            tasks,
        )
        from personalization.api import recommendations as api_recommendations
        from personalization.tracking import identity, stitching

        for receiver in (conf.reload_on_setting_changed, near_cache.forget_on_setting_changed,
                         identity.forget_on_setting_changed, api_recommendations.forget_on_setting_changed,
                         ratelimit.forget_on_setting_changed):
            setting_changed.connect(receiver, dispatch_uid=f"{receiver.__module__}.{receiver.__qualname__}")
        user_logged_in.connect(stitching.link_visitor, dispatch_uid="personalization_link_visitor")
        user_logged_out.connect(stitching.rotate_on_logout, dispatch_uid="personalization_rotate_visitor")
        # deleting a user forgets them: events, links, logs, notifications, caches, their rows in the live model
        pre_delete.connect(privacy.forget_deleted_user, sender=get_user_model(),
                           dispatch_uid="personalization_forget_deleted_user")
        from personalization.models import Experiment
        from personalization.serving import arms

        for signal in (post_save, post_delete):  # this process serves a started or ended A/B test at once
            signal.connect(arms.forget_running, sender=Experiment, dispatch_uid=f"personalization_arms_{signal}")
        signals.model_promoted.connect(serving.publish_live_version, dispatch_uid="personalization_publish_live")
        signals.model_promoted.connect(tasks.queue_precompute, dispatch_uid="personalization_queue_precompute")
        signals.model_updated.connect(serving.publish_revision, dispatch_uid="personalization_publish_revision")
        signals.training_queued.connect(tasks.send_training, dispatch_uid="personalization_send_training")
        signals.training_cancelled.connect(tasks.revoke_training, dispatch_uid="personalization_revoke_training")
        signals.audit_requested.connect(tasks.send_audit, dispatch_uid="personalization_send_audit")
        # beat entries as editable periodic tasks: the ones a release adds appear after its migrate
        post_migrate.connect(periodic_tasks.install_on_migrate, sender=self,
                             dispatch_uid="personalization_install_periodic_tasks")
        if apps.is_installed("django.contrib.admin"):  # the dashboard page (its admin reuses personalization.admin)
            from personalization.monitoring import dashboard_admin  # noqa: F401
        for celery_signal in (celery_signals.worker_ready, celery_signals.heartbeat_sent, celery_signals.task_prerun):
            celery_signal.connect(tasks.stamp_worker_seen, dispatch_uid="personalization_worker_seen", weak=False)
