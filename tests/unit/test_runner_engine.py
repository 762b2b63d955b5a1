"""The engine (``Runner``) with a scripted executor on simulated time: retries, pauses, the
in-flight bound, lost and failed workers, cancellation and redirects, without a socket or a
sleep (``fake_engine``)."""

from __future__ import annotations

import signal

import pytest
from fake_engine import OK, Reply, Simulation, engine_run

from poolfetch.core.config import FetchConfig, RateLimit, RetryPolicy
from poolfetch.core.errors import WorkerProcessError
from poolfetch.core.exit_codes import ExitCode
from poolfetch.core.runner import GRACE_PERIOD_S, REPORT_INTERVAL_S
from poolfetch.core.shutdown import CancelToken, ForcedExit

EPS = 1e-6


def test_a_503_is_sent_again_after_its_backoff_and_the_record_says_two_attempts() -> None:
    url = "http://a.test/x"
    config = FetchConfig(workers=2, retry=RetryPolicy(backoff=0.5))
    run = engine_run([url], {url: [Reply(503, delay=0.2), OK]}, config=config)
    outcome = run.runner.run()
    first, second = run.workers.sent_to(url)
    waited = second.at - (first.at + 0.2)
    assert 0.5 - EPS <= waited <= 1.0 + EPS  # --backoff 0.5, plus up to 0.5 of jitter
    (record,) = run.sink.results
    assert (record.ok, record.status, record.attempts) == (True, 200, 2)
    assert outcome.exit_code == ExitCode.OK
    assert outcome.summary["retries"] == 1 and outcome.summary["requests"] == 2


def test_retries_that_keep_failing_end_in_one_failed_record_and_exit_1() -> None:
    url = "http://a.test/x"
    config = FetchConfig(workers=1, retry=RetryPolicy(retries=2, backoff=0.1))
    run = engine_run([url], {url: [Reply(500)]}, config=config)
    outcome = run.runner.run()
    assert len(run.workers.sent_to(url)) == 3
    (record,) = run.sink.results
    assert (record.ok, record.status, record.attempts, record.error) == (False, 500, 3, "HTTP 500")
    assert outcome.exit_code == ExitCode.URLS_FAILED


def test_a_429_with_retry_after_pauses_its_host_while_the_other_host_goes_on() -> None:
    paused = [f"http://a.test/{i}" for i in range(3)]
    other = [f"http://b.test/{i}" for i in range(6)]
    urls = [u for pair in zip(paused, other, strict=False) for u in pair] + other[3:]
    script = {paused[0]: [Reply(429, delay=0.1, retry_after="5"), OK]} | {
        u: [Reply(200, delay=1.0)] for u in other
    }
    run = engine_run(urls, script, config=FetchConfig(workers=2), capacity=2)
    outcome = run.runner.run()
    start = run.workers.sent_to(paused[0])[0].at
    pause_ends = start + 0.1 + 5.0
    to_a = [s for s in run.workers.sent if s.host == "a.test:80"]
    assert [s.at for s in to_a if start < s.at < pause_ends - EPS] == []
    assert len([s for s in to_a if s.at >= pause_ends - EPS]) == 3  # the 429's retry and two
    during = [s for s in run.workers.sent if s.host == "b.test:80" and s.at < pause_ends]
    assert len(during) == len(other)  # b's URLs all went while a rested
    results = run.sink.by_url()
    assert all(results[u].ok for u in urls) and results[paused[0]].attempts == 2
    assert outcome.summary["status_429"] == 1


def test_no_more_attempts_run_at_once_than_the_executor_can_hold_even_when_it_shrinks() -> None:
    urls = [f"http://h{i % 5}.test/{i}" for i in range(40)]
    script = {u: [Reply(200, delay=0.05 + 0.07 * (i % 4))] for i, u in enumerate(urls)}
    run = engine_run(urls, script, config=FetchConfig(workers=3), capacity=3)
    run.sim.at(run.sim.now + 0.5, lambda: setattr(run.workers, "capacity", 1))  # a child died
    outcome = run.runner.run()
    sent = run.workers.sent
    assert len(sent) == 40 and len(run.sink.by_url()) == 40
    assert run.workers.answered_count == 40  # each answer gave its worker back
    assert all(s.running < s.capacity for s in sent)
    assert max(s.running for s in sent) == 2  # the third of three started with two running
    late = [s for s in sent if s.capacity == 1]
    assert late and all(s.running == 0 for s in late)
    assert outcome.exit_code == ExitCode.OK


def test_a_lost_attempt_is_run_again_with_its_host_slot_freed_and_recorded_once() -> None:
    url, after = "http://a.test/lost", "http://a.test/next"
    # one connection per host: a lost attempt that kept its slot would block the host for ever
    config = FetchConfig(workers=2, rate=RateLimit(per_host_connections=1))
    run = engine_run([url, after], {url: [Reply(lost=True, delay=0.3), OK]}, config=config)
    outcome = run.runner.run()
    assert len(run.workers.sent_to(url)) == 2 and len(run.workers.sent_to(after)) == 1
    results = run.sink.by_url()
    assert results[url].ok and results[after].ok
    assert results[url].attempts == 2  # the lost one may have reached the server: it counts
    assert outcome.summary["total"] == 2 and outcome.exit_code == ExitCode.OK


def test_a_failed_executor_ends_the_run_with_its_summary_made_and_raises() -> None:
    first, second, third = (f"http://a.test/{i}" for i in range(3))
    error = WorkerProcessError("every worker process died")
    script = {first: [Reply(delay=0.1)], second: [Reply(delay=0.5, fail=error)]}
    run = engine_run([first, second, third], script, capacity=1)
    with pytest.raises(WorkerProcessError) as raised:
        run.runner.run()
    assert raised.value is error
    assert run.workers.closed and run.sink.closed
    assert [r.url for r in run.sink.results] == [first]
    assert run.runner.summary is not None
    assert run.runner.summary["ok"] == 1 and run.runner.summary["total"] == 1


def test_a_cancel_settles_what_answers_within_the_grace_and_abandons_the_rest() -> None:
    quick, stuck, queued = "http://a.test/quick", "http://b.test/stuck", "http://c.test/queued"
    script = {quick: [Reply(delay=2.0)], stuck: [Reply(silent=True)]}
    token = CancelToken()
    run = engine_run([quick, stuck, queued], script, capacity=2, cancel=token)
    cancelled_at = run.sim.now + 0.5
    run.sim.at(cancelled_at, lambda: token.cancel(signal.SIGINT))
    outcome = run.runner.run()
    assert [r.url for r in run.sink.results] == [quick]  # answered 1.5 s into the grace
    assert run.workers.sent_to(queued) == []  # never started: a resumed run fetches it
    assert outcome.abandoned == 1 and outcome.exit_code == ExitCode.SIGINT
    assert outcome.summary["interrupted"] == "SIGINT"
    assert run.sim.now <= cancelled_at + REPORT_INTERVAL_S + GRACE_PERIOD_S + EPS
    assert run.workers.closed


def test_a_cancel_ends_a_wait_that_its_timeout_no_longer_ends() -> None:
    """CPython 3.11: a signal handler that runs inside ``SimpleQueue.get(timeout=...)`` can
    leave the wait blocked until the next item. Against a server that stalls every attempt
    no item came, and the run ignored its SIGTERM; the cancel now puts one."""
    stuck = "http://a.test/stuck"
    token = CancelToken()
    sim = Simulation(handled_waits_end_on_put=True)
    run = engine_run([stuck], {stuck: [Reply(silent=True)]}, cancel=token, sim=sim)
    cancelled_at = run.sim.now + 0.1  # inside the runner's wait, as a signal handler runs
    run.sim.at(cancelled_at, lambda: token.cancel(signal.SIGTERM))
    outcome = run.runner.run()
    assert outcome.exit_code == ExitCode.SIGTERM and outcome.abandoned == 1
    assert run.sim.now <= cancelled_at + GRACE_PERIOD_S + EPS


def test_a_second_signal_before_the_loop_saw_the_first_skips_the_grace() -> None:
    stuck = "http://a.test/stuck"
    token = CancelToken()
    run = engine_run([stuck], {stuck: [Reply(silent=True)]}, cancel=token)
    signalled_at = run.sim.now + 0.1

    def second_signal() -> None:
        raise ForcedExit  # what the handler raises for a second signal, inside the wait

    run.sim.at(signalled_at, lambda: token.cancel(signal.SIGINT))
    run.sim.at(signalled_at, second_signal)
    outcome = run.runner.run()
    assert outcome.exit_code == ExitCode.SIGINT and outcome.abandoned == 1
    assert run.sim.now == signalled_at  # no grace period waited
    assert run.workers.closed


def test_answers_waiting_when_the_cancel_comes_are_recorded_not_dropped() -> None:
    """Two answers arrive together and the run is cancelled as the first is handled (the
    results' reader gone, `| head -1`): the second was taken from the inbox and dropped, so
    the run waited the whole grace for it and lost its record."""
    urls = ["http://a.test/1", "http://b.test/2"]
    token = CancelToken()
    run = engine_run(urls, {}, capacity=2, cancel=token)
    start = run.sim.now
    run.sim.at(start + OK.delay, lambda: token.cancel(signal.SIGPIPE))
    outcome = run.runner.run()
    assert sorted(r.url for r in run.sink.results) == urls
    assert outcome.abandoned == 0 and outcome.exit_code == ExitCode.SIGPIPE
    assert run.sim.now < start + GRACE_PERIOD_S  # nothing was waited for


class _UnreadableState:
    """A state file that opened but fails on its first read (damaged pages, a lock)."""

    def begin(self, refresh: bool) -> None:
        raise OSError("disk I/O error")


def test_a_state_that_fails_to_begin_stops_the_workers_already_started() -> None:
    # the workers start (every Session built) before the state's run begins: left running,
    # their threads kept the process from exiting after the error was reported
    run = engine_run(["http://a.test/x"], state=_UnreadableState())
    with pytest.raises(OSError, match="disk I/O error"):
        run.runner.run()
    assert run.workers.closed
    assert run.workers.sent == []


def test_a_redirect_is_one_more_attempt_and_waits_for_the_rate_limit_like_one() -> None:
    url, target = "http://a.test/old", "http://b.test/new"
    config = FetchConfig(workers=2, rate=RateLimit(qps=1.0))
    run = engine_run([url], {url: [Reply(301, delay=0.1, redirect_to=target)]}, config=config)
    outcome = run.runner.run()
    first, hop = run.workers.sent
    assert (first.url, hop.url, hop.host) == (url, target, "b.test:80")
    assert hop.at - first.at >= 1.0 - EPS  # --qps 1: the hop took the second start
    (record,) = run.sink.results
    assert (record.url, record.ok, record.attempts, record.final_url) == (url, True, 2, target)
    assert outcome.summary["requests"] == 2


def test_bare_429s_back_the_host_off_longer_each_episode_on_the_runners_clock() -> None:
    first, second = "http://a.test/1", "http://a.test/2"
    config = FetchConfig(
        workers=1, rate=RateLimit(per_host_connections=1), retry=RetryPolicy(backoff=1.0)
    )
    script = {first: [Reply(429), Reply(429), OK], second: [Reply(429), OK]}
    run = engine_run([first, second], script, config=config, capacity=1)
    run.runner.run()
    sent = run.workers.sent
    # episode 1 pauses the host 1-2 s; the 429 after that pause is episode 2: 2-3 s
    assert 1.0 - EPS <= sent[1].at - (sent[0].at + 0.1) <= 2.0 + EPS
    assert sent[2].at - (sent[1].at + 0.1) >= 2.0 - EPS
    assert all(r.ok for r in run.sink.results) and len(run.sink.results) == 2
