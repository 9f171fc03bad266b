"""What a Celery worker or beat process of MUTT runs besides its tasks: health probes, SIGHUP reload.

Celery imports these modules in every worker and beat process (``celery_app.PROCESS_MODULES``), and
the worker's consumer runs :class:`mutt_app.worker.health.WorkerProbes` as a bootstep.
"""
