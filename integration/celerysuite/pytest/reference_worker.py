"""Celery's own worker for the suite's tasks, started outside pytest the
way celery.contrib.testing.worker.start_worker starts it inside: the same
test app configuration, prefork with one process, no heartbeat, mingle or
gossip. It is the reference the suite's results against gworker are
compared with.

    python3 -m reference_worker NODENAME

with TEST_BROKER and TEST_BACKEND set as for the suite, the suite's
release directory and this directory on PYTHONPATH, and
CELERYSUITE_RESULT_EXTENDED=1 where the suite's conftest sets
result_extended (5.5).
"""
import os
import sys

from celery.contrib.testing.app import TestApp


def main(nodename):
    config = {
        "broker_url": os.environ["TEST_BROKER"],
        "result_backend": os.environ["TEST_BACKEND"],
    }
    if os.environ.get("CELERYSUITE_RESULT_EXTENDED") == "1":
        config["result_extended"] = True
    app = TestApp(name="celerysuite", config=config, enable_logging=True)
    app.set_current()
    app.set_default()
    app.loader.import_task_module("t.integration.tasks")
    from t.integration.tasks import ClassBasedAutoRetryTask
    app.register_task(ClassBasedAutoRetryTask)
    app.worker_main([
        "worker", "-n", nodename, "-P", "prefork", "-c", "1", "-l", "WARNING",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ])


if __name__ == "__main__":
    main(sys.argv[1])
