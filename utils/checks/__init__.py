"""Self-checks for the exercises: each says plainly whether an answer is right, and if not, what is wrong.

A lesson's checks live in ``utils.checks.lNN``; a notebook calls one on the learner's function and
sees a single line. An answer that is not written yet (``NotImplementedError``) is reported as such,
never as an error, so the notebook runs on with the reference implementation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["correct", "wrong", "not attempted"]
_ICONS = {"correct": "✅", "wrong": "❌", "not attempted": "⏳"}

#: Relative tolerance of the numeric checks: a float32 answer (Keras's default dtype) is right to about 1e-7,
#: 1e-5 leaves room for its sums, and every mistake a check names lies far outside it.
RTOL = 1e-5


class Wrong(AssertionError):
    """Raised by a check to say what is wrong with an answer (the message is shown to the learner)."""


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one answer: its status and the sentence shown to the learner."""

    exercise: str
    status: Status
    message: str

    @property
    def passed(self) -> bool:
        """True only for a correct answer."""
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"{_ICONS[self.status]} {self.exercise}: {self.message}"


def run_check(exercise: str, check: Callable[[Any], str], answer: Any, fallback: str) -> CheckResult:
    """Run ``check(answer)``, which returns a success sentence or raises :class:`Wrong`.

    ``fallback`` names the reference implementation the lesson uses when the answer is missing. An exception
    raised inside the learner's function is reported as theirs, with its type and message; any other exception
    arose while the check used what the function returned, and is reported as such (not blamed on their code).
    The global random streams are as before the check, whatever it drew, so the lesson's numbers do not depend on
    whether (or how) the exercise was answered.
    """
    from utils.runtime import random_state_kept  # imports TensorFlow: only when a check runs

    try:
        with random_state_kept():  # a check that trains a toy model leaves the lesson's random draws unchanged
            praise = check(_marking_exceptions(answer) if callable(answer) else answer)
    except NotImplementedError:
        return CheckResult(exercise, "not attempted", f"not written yet; the lesson goes on with {fallback}")
    except Wrong as err:
        return CheckResult(exercise, "wrong", str(err))
    except Exception as err:  # say how, not a traceback
        if getattr(err, _RAISED_BY_ANSWER, False):
            return CheckResult(exercise, "wrong", f"your code raised {type(err).__name__}: {err}")
        return CheckResult(exercise, "wrong",
                           f"the check could not use what your function returned ({type(err).__name__}: {err}); "
                           "compare its type and shape with what the docstring asks for")
    return CheckResult(exercise, "correct", praise)


_RAISED_BY_ANSWER = "_raised_by_answer"


def _marking_exceptions(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every exception it raises tagged, so :func:`run_check` can tell the learner's errors from its own."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            try:
                setattr(err, _RAISED_BY_ANSWER, True)
            except (AttributeError, TypeError):  # an exception type without a __dict__: cannot be tagged
                pass
            raise

    return call


def expect(condition: bool, message: str) -> None:
    """Raise :class:`Wrong` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Wrong(message)
