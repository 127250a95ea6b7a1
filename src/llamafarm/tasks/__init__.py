"""Background work: the Celery app, thin task wrappers, and the task service the API uses."""
