"""mesh.haproxy.answer_order: a streak of sampled failures is exact in order, never long."""

from __future__ import annotations

import random

from mesh.haproxy.answer_order import AnswerOrder
from mesh.haproxy.log_lines import Request
from mesh.resilience import outcome
from mesh.resilience.outlier import Effect, Ejected, Ejections, OutlierConfig


def failure(answer: int | None, *, answered: int | None = None, worker: int = 1) -> Request:
    """A logged 500 (`answer` its number) or, without `answer`, a timeout."""
    return Request(
        backend="hello",
        server="hello-a",
        status=500 if answer is not None else 504,
        termination="----" if answer is not None else "sH--",
        retries=0,
        redispatched=False,
        connect=0.001,
        response=0.002 if answer is not None else -1.0,
        total=0.003,
        worker=worker,
        answer=answer,
        answered=answer if answered is None else answered,
        route="path",
        replied_flags="",
        method="GET",
        path="/",
        request_id="r",
    )


def test_failures_numbered_one_after_the_other_are_in_a_row() -> None:
    order = AnswerOrder()
    assert not order.follows("hello", failure(7))  # nothing seen before it
    assert order.follows("hello", failure(8))
    assert order.follows("hello", failure(9))


def test_a_gap_in_the_numbers_is_answers_unseen_between() -> None:
    order = AnswerOrder()
    order.follows("hello", failure(7))
    assert not order.follows("hello", failure(9))  # answer 8 was not logged: a success
    assert order.follows("hello", failure(10))


def test_a_line_without_an_answer_follows_when_no_answer_came_since() -> None:
    order = AnswerOrder()
    order.follows("hello", failure(7))
    assert order.follows("hello", failure(None, answered=7))  # a timeout right after 7
    assert order.follows("hello", failure(None, answered=7))  # and another
    assert order.follows("hello", failure(8))
    assert not order.follows("hello", failure(None, answered=9))  # 9 answered meanwhile


def test_lines_out_of_order_other_workers_or_no_numbers_never_follow() -> None:
    order = AnswerOrder()
    order.follows("hello", failure(7))
    assert not order.follows("hello", failure(6))  # arrived late
    assert not order.follows("hello", failure(7, worker=2))  # a reload's other worker
    order.follows("hello", failure(8, worker=2))
    assert not order.follows("hello", failure(None, answered=None, worker=2))
    assert not order.follows("hello", failure(9, worker=2))  # nothing to place 9 after


def test_servers_and_services_are_numbered_apart_and_forgotten_when_gone() -> None:
    order = AnswerOrder()
    order.follows("hello", failure(7))
    assert not order.follows("shop", failure(8))  # another service's hello-a
    order.retain({("shop", "hello-a")})
    assert not order.follows("hello", failure(8))  # hello's was forgotten
    assert order.follows("shop", failure(9))


def streaks(answers: list[bool], sample: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """(true, counted) streak after each failure of one server's `answers` (True: a 500),
    with 1 in `sample` successes logged, as the plane counts them: a logged success ends
    the streak, and so does a failure that does not follow."""
    order, true, counted = AnswerOrder(), [], []
    streak = run = 0
    for number, failed in enumerate(answers, start=1):
        run = run + 1 if failed else 0
        if failed:
            streak = streak + 1 if order.follows("hello", failure(number)) else 1
            true.append(run)
            counted.append(streak)
        elif rng.randrange(sample) == 0:
            streak = 0
    return true, counted


def test_sampled_streaks_are_the_true_streaks() -> None:
    rng = random.Random(15)
    for share in (0.1, 0.5, 0.9, 1.0):
        answers = [rng.random() < share for _ in range(5000)]
        true, counted = streaks(answers, 10, rng)
        assert counted == true


def test_lines_out_of_order_only_ever_shorten_a_streak() -> None:
    rng = random.Random(3)
    answers = [rng.random() < 0.7 for _ in range(3000)]
    runs, run = {}, 0
    for number, failed in enumerate(answers, start=1):
        run = run + 1 if failed else 0
        if failed:
            runs[number] = run
    lines = list(runs)
    for at in range(0, len(lines) - 4, 3):  # datagrams a few places out of order
        window = lines[at : at + 4]
        rng.shuffle(window)
        lines[at : at + 4] = window
    order, streak, shorter = AnswerOrder(), 0, 0
    for number in lines:
        streak = streak + 1 if order.follows("hello", failure(number)) else 1
        assert streak <= runs[number]
        shorter += streak < runs[number]
    assert shorter  # the shuffle did cut some


def ejected(every: int, *, numbered: bool) -> bool:
    """Whether outlier detection (consecutive_5xx 2) ejects a server failing one answer in
    `every`, seeing 1 in 10 of its successes, with or without the answer numbers."""
    rng = random.Random(7)
    ejections, order = Ejections(OutlierConfig(consecutive_5xx=2)), AnswerOrder()
    effects: list[Effect] = []
    for number in range(1, 1001):
        if number % every:
            if rng.randrange(10) == 0:  # a logged success
                effects += ejections.observe("hello-a", outcome.response(200), 0.0, 4)
            continue
        if numbered and not order.follows("hello", failure(number)):
            effects += ejections.observe("hello-a", outcome.response(200), 0.0, 4)
        effects += ejections.observe("hello-a", outcome.response(500), 0.0, 4)
    return any(isinstance(effect, Ejected) for effect in effects)


def test_a_server_failing_one_answer_in_ten_is_not_ejected_and_one_failing_all_is() -> None:
    assert not ejected(10, numbered=True)
    assert ejected(1, numbered=True)
    assert ejected(10, numbered=False)  # the defect the numbers fix: unseen successes
