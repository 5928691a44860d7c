"""Pytest plugin that runs Celery's integration suite against a worker
started outside pytest.

Load it before Celery's own plugin and the suite's conftest:

    python3 -m pytest -p gworker_suite_plugin -p celery.contrib.pytest ...

It replaces ``celery_session_worker`` (the fixture that would start a
worker inside pytest) with one that registers the suite's tasks on the
client app and waits until the external worker answers a ping. The suite's
files stay unmodified: the fixture is swapped in celery.contrib.pytest
before the suite's conftest imports it, and test_inspect's NODENAME (the
anonymous node name an in-process worker would have) is pointed at the
external worker's name after collection.

Environment:
  CELERYSUITE_NODENAME  node name of the external worker (required)
  CELERYSUITE_TIMEOUT   upper bound in seconds on any one test's timeout,
                        including the suite's own timeout markers (60)
  CELERYSUITE_RERUNS    upper bound on the reruns of a test the suite marks
                        flaky (1)
  CELERYSUITE_READY     seconds to wait for the worker's first pong (60)
"""
import os
import time

import pytest

import celery.contrib.pytest as celery_pytest

NODENAME = os.environ.get("CELERYSUITE_NODENAME", "")
TIMEOUT_CAP = float(os.environ.get("CELERYSUITE_TIMEOUT", "60"))
RERUNS_CAP = int(os.environ.get("CELERYSUITE_RERUNS", "1"))
READY_WAIT = float(os.environ.get("CELERYSUITE_READY", "60"))


class ExternalWorker:
    """Stands for the worker the suite would have started in-process."""

    def __init__(self, hostname):
        self.hostname = hostname


def _wait_for_worker(app):
    deadline = time.monotonic() + READY_WAIT
    while True:
        replies = app.control.ping(destination=[NODENAME], timeout=1.0)
        if any(NODENAME in r for r in replies or ()):
            return
        if time.monotonic() > deadline:
            pytest.exit("the external worker %s did not answer a ping within %ss"
                        % (NODENAME, READY_WAIT), returncode=3)


@pytest.fixture(scope="session")
def celery_session_worker(request, celery_session_app, celery_includes,
                          celery_class_tasks):
    """The external worker: the suite's tasks are registered on the client
    app, as celery.contrib.pytest's fixture does, but no worker starts."""
    if not NODENAME:
        pytest.exit("CELERYSUITE_NODENAME must name the external worker", returncode=3)
    for module in celery_includes:
        celery_session_app.loader.import_task_module(module)
    for class_task in celery_class_tasks:
        celery_session_app.register_task(class_task)
    _wait_for_worker(celery_session_app)
    yield ExternalWorker(NODENAME)


# The suite's conftest does `from celery.contrib.pytest import
# celery_session_worker`: this plugin is imported first, so it gets ours.
celery_pytest.celery_session_worker = celery_session_worker


def pytest_configure(config):
    if not NODENAME:
        raise pytest.UsageError("CELERYSUITE_NODENAME must name the external worker")
    _limit_manager_wait()


def _limit_manager_wait():
    """Manager.wait_until_idle (Celery 5.5) asks every worker for its active
    tasks and waits the whole broadcast timeout for replies; there is one
    worker, so stop at its reply (same loop, same test)."""
    from celery.contrib.testing import manager as manager_mod
    if not hasattr(manager_mod.ManagerMixin, "wait_until_idle"):
        return
    from kombu.exceptions import ContentDisallowed

    def wait_until_idle(self):
        control = self.app.control
        with self.app.connection() as connection:
            while control.purge(connection=connection):
                pass
            inspect = control.inspect(destination=[NODENAME], limit=1)
            inspect.connection = connection
            while True:
                try:
                    count = sum(len(t) for t in (inspect.active() or {}).values())
                except ContentDisallowed:
                    break
                if count == 0:
                    break

    manager_mod.ManagerMixin.wait_until_idle = wait_until_idle


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.endswith("test_inspect") \
                and hasattr(module, "NODENAME"):
            module.NODENAME = NODENAME
        _cap_markers(item)


def _cap_markers(item):
    timeout = item.get_closest_marker("timeout")
    limit = TIMEOUT_CAP
    if timeout is not None:
        given = timeout.kwargs.get("timeout", timeout.args[0] if timeout.args else None)
        if given is not None:
            limit = min(float(given), TIMEOUT_CAP)
    item.add_marker(pytest.mark.timeout(timeout=limit), append=False)
    flaky = item.get_closest_marker("flaky")
    if flaky is not None:
        kwargs = dict(flaky.kwargs)
        kwargs["reruns"] = min(int(kwargs.get("reruns", 1)), RERUNS_CAP)
        kwargs["reruns_delay"] = min(float(kwargs.get("reruns_delay", 0)), 1.0)
        item.add_marker(pytest.mark.flaky(**kwargs), append=False)


# Per-test outcomes, written to $CELERYSUITE_RESULTS at the end of the run
# as "nodeid<TAB>outcome" lines: passed, failed, error, skipped, xfailed or
# xpassed. A test whose subtest failed is failed; reruns count by their
# last try.
_outcomes = {}
_subtest_failed = set()


def pytest_runtest_logreport(report):
    if report.outcome == "rerun":
        _subtest_failed.discard(report.nodeid)
        return
    nodeid = report.nodeid
    if type(report).__name__ == "SubTestReport":
        if report.failed:
            _subtest_failed.add(nodeid)
        return
    wasxfail = hasattr(report, "wasxfail")
    if report.when == "setup":
        if report.failed:
            _outcomes[nodeid] = "error"
        elif report.skipped:
            _outcomes[nodeid] = "xfailed" if wasxfail else "skipped"
    elif report.when == "call":
        if wasxfail:
            _outcomes[nodeid] = "xfailed" if report.skipped else "xpassed"
        elif report.passed:
            _outcomes[nodeid] = "failed" if nodeid in _subtest_failed else "passed"
        elif report.skipped:
            _outcomes[nodeid] = "skipped"
        else:
            _outcomes[nodeid] = "failed"
    elif report.when == "teardown" and report.failed:
        _outcomes[nodeid] = "error"


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("CELERYSUITE_RESULTS")
    if not path:
        return
    with open(path, "w") as f:
        for nodeid in sorted(_outcomes):
            f.write("%s\t%s\n" % (nodeid, _outcomes[nodeid]))
