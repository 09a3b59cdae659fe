"""The Celery worker entrypoint: the run_job task and the worker's signals."""
