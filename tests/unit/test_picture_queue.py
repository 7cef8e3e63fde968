"""The background queue that writes the items' pictures."""

import threading

from harness.plugin import PictureQueue


def test_errors_of_jobs_are_kept_and_every_job_runs():
    queue = PictureQueue()
    done = []

    def job(n):
        if n % 3 == 0:
            raise OSError(f"disk full at {n}")
        done.append(n)

    for n in range(10):
        queue.submit(job, n)
    errors = queue.close()
    assert sorted(done) == [1, 2, 4, 5, 7, 8]
    assert sorted(str(e) for e in errors) == [f"disk full at {n}" for n in (0, 3, 6, 9)]


def test_backlog_is_bounded():
    queue = PictureQueue()
    queue.MAX_WAITING = 4
    gate = threading.Event()
    started = []

    def job(n):
        started.append(n)
        gate.wait(5)

    releaser = threading.Timer(0.2, gate.set)
    releaser.start()
    for n in range(8):
        queue.submit(job, n)
        # submit returns only once at most MAX_WAITING jobs are queued or running
        assert len(queue._waiting) <= 4
    assert queue.close() == []
    assert sorted(started) == list(range(8))
