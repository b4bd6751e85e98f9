"""``collector_paused``: no garbage collection during a rewrite job, the collector as it was after."""

from __future__ import annotations

import gc

import pytest

from bn2gn.core.process import collector_paused


def test_paused_inside_and_enabled_after_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            raise RuntimeError("the job failed")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_rewrite_job_runs_with_the_collector_paused(monkeypatch):
    from bn2gn.source import rewrite
    from bn2gn.source.support import combined

    seen = []
    real = combined.transform

    def recording(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(combined, "transform", recording)
    from conftest import CENTERNET

    from bn2gn import api

    session = api.Session.open([CENTERNET])
    jobs = [job for job in session.rewrite_jobs().values() if not job.settled]
    results = [rewrite.run_job(job) for job in jobs]
    assert seen and not any(seen)
    assert all(r.status == "changed" for r in results) and gc.isenabled()
