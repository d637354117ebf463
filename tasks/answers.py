"""Final answers of reasoning outputs (GSM8K, MATH-style problems) and when two answers are the same.

Extraction. :func:`marked_answer` is the answer a text marks, in this order: what follows the last ``####``
(GSM8K's marker), the content of the last ``\\boxed{...}`` (braces balanced), the content of the last
``<answer>...</answer>``, what follows the last ``Final answer:`` on its line (s1's budget forcing ends the
thinking with it); stripped, None when the text has no marker. :func:`final_answer` falls back to the whole
text (a reference such as ``18``); :func:`completion_answer` reads only what a completion writes after its
last ``</think>``, so a marker inside the thinking never counts.

Normalisation (:func:`normalize_answer`): ``$``, ``\\$``, LaTeX's ``\\!`` and thousands separators
(``1,234``) dropped, a trailing period dropped, numbers in canonical decimal form (``18.00`` == ``18``,
``-.5`` == ``-0.50``), other text lower-cased with runs of spaces collapsed.

Equivalence (:func:`answers_match`): equal normal forms, else HF's math-verify (``math_verify.parse`` of each
final answer inside ``\\boxed{}``, then ``verify(reference, prediction)``: ``\\frac{1}{2}`` == ``0.5`` ==
``1/2``, ``x=3`` == ``3``); when math-verify parses nothing from either side or runs out of time the normal
forms decide, i.e. the answers differ.

Time bound. math-verify runs sympy, which on some answers never finishes and grows without bound
(``2^{2^{2^{40}}}`` against ``3`` takes ~50 MB/s), and its own timeouts use ``signal.alarm``, which works
only in a main thread (rewards and scorers may run in others). So it runs with its timeouts disabled in a
separate worker process (:class:`MathVerifyWorker`, one per process, started on first use in about a
second, importing nothing but math-verify), and a comparison that passes its deadline (``timeout_s``,
default math-verify's own 5 s) kills the worker and falls back; the next comparison starts a fresh one.
A thread could not be stopped, so its runaway computation would keep the CPU and memory of the training
process. Calls from several threads are serialised by a lock; the deadline counts from the request, so the
wait for the lock and a (re)start, bounded apart, are not in it. A worker that cannot start (math-verify
missing) is reported once and the normal forms decide from then on. Verdicts are cached per pair.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FINAL_LINE = re.compile(r"final answer\s*:[ \t]*([^\n]*)", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
END_THINK = "</think>"


def marked_answer(text: str) -> str | None:
    """The answer ``text`` marks (see the module docstring), None without a marker or for a non-string."""
    if not isinstance(text, str):
        return None
    marker = text.rfind("####")
    if marker >= 0:
        return text[marker + 4 :].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    lines = _FINAL_LINE.findall(text)
    return lines[-1].strip().removesuffix("</answer>").strip() if lines else None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, None if there is none or it is unclosed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return text[begin:index]
    return None


def final_answer(text: str) -> str:
    """The marked answer of ``text``, else the whole text stripped; ``""`` for a non-string."""
    marked = marked_answer(text)
    return marked if marked is not None else (text.strip() if isinstance(text, str) else "")


def completion_answer(text: str) -> str | None:
    """The marked answer of what a completion writes after its last ``</think>`` (all of it without one);
    None when that part marks no answer."""
    if not isinstance(text, str):
        return None
    return marked_answer(text.rsplit(END_THINK, 1)[-1])


def read_answer(text: str) -> tuple[str, str]:
    """``(normal form of the completion's answer, "")``, or ``("", reason)``: ``not_text``, ``no_answer``
    (no marker after the last ``</think>``) or ``empty_answer``."""
    if not isinstance(text, str):
        return "", "not_text"
    answer = completion_answer(text)
    if answer is None:
        return "", "no_answer"
    normal = normalize_answer(answer)
    return (normal, "") if normal else ("", "empty_answer")


def canonical(answer: str) -> str:
    """The normal form of one answer (see the module docstring)."""
    answer = _THOUSANDS.sub("", answer.replace("\\$", "").replace("$", "").replace("\\!", ""))
    answer = answer.strip().rstrip(".").strip()
    try:
        number = Decimal(answer)
    except InvalidOperation:
        return " ".join(answer.lower().split())
    if not number.is_finite():
        return answer.lower()
    return format(number.normalize(), "f") if number != 0 else "0"


def normalize_answer(text: str) -> str:
    """The normal form of ``final_answer(text)``."""
    return canonical(final_answer(text))


def answers_match(predicted: str, reference: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the final answer of ``predicted`` is equivalent to that of ``reference`` (module docstring);
    an empty prediction never matches."""
    prediction, gold = final_answer(predicted), final_answer(reference)
    normal = canonical(prediction)
    if not normal or not gold:
        return False
    if normal == canonical(gold):
        return True
    return bool(_verified(gold, prediction, timeout_s))


@lru_cache(maxsize=65536)
def _verified(gold: str, prediction: str, timeout_s: float) -> bool | None:
    return WORKER.check(gold, prediction, timeout_s)


# The worker runs this file by path (not ``tasks.answers``: importing the package would load torch), with the
# ``-c`` entry '' dropped from sys.path so no file of the working directory shadows a module.
_BOOT = "import runpy, sys; sys.path.pop(0); runpy.run_path(sys.argv[1], run_name='__math_verify_worker__')"


class MathVerifyWorker:
    """math-verify in a child process, each comparison bounded by a deadline (see the module docstring).

    ``command`` starts the child (default: this file's :func:`serve` under the running interpreter); it
    prints ``ready`` once, then answers each JSON line ``[gold, prediction]`` with ``true``, ``false`` or
    ``null`` (nothing parsed). ``start_timeout_s`` bounds the start.
    """

    def __init__(self, command: Sequence[str] | None = None, start_timeout_s: float = 60.0) -> None:
        self.command = list(command or [sys.executable, "-c", _BOOT, os.path.abspath(__file__)])
        self.start_timeout_s = start_timeout_s
        self.timeouts = 0
        self.unavailable = ""
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._owner = 0
        atexit.register(self.close)

    def check(self, gold: str, prediction: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool | None:
        """math-verify's verdict on ``prediction`` against ``gold``; None when it parsed nothing, timed out
        (the worker is killed) or is unavailable."""
        with self._lock:
            if not self._started():
                return None
            try:
                self._process.stdin.write(json.dumps([gold, prediction]) + "\n")
                self._process.stdin.flush()
                line = self._lines.get(timeout=timeout_s)
            except OSError:  # the worker died before reading the request
                line = None
            except queue.Empty:
                self.timeouts += 1
                logger.warning(
                    "math-verify: no verdict within %.3g s, answers compared by normal form", timeout_s
                )
                line = None
            understood, verdict = _reply(line)
            if not understood:
                self._stop()
            return verdict

    def close(self) -> None:
        """Stop the worker (it is started again by the next :meth:`check`)."""
        with self._lock:
            self._stop()

    def _started(self) -> bool:
        """Whether a worker of this process runs, starting one if needed."""
        if self.unavailable:
            return False
        if self._process is not None and self._owner == os.getpid() and self._process.poll() is None:
            return True
        self._process, self._owner, self._lines = None, os.getpid(), queue.Queue()
        try:
            process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
            )
        except OSError as error:
            return self._give_up(str(error))
        threading.Thread(target=_pump, args=(process.stdout, self._lines), daemon=True).start()
        self._process = process
        try:
            ready = self._lines.get(timeout=self.start_timeout_s)
        except queue.Empty:
            ready = None
        if ready != "ready\n":
            self._stop()
            return self._give_up(f"the worker did not start ({ready or 'no answer'})")
        return True

    def _give_up(self, why: str) -> bool:
        self.unavailable = why
        logger.warning("math-verify unavailable (%s): answers are compared by normal form only", why)
        return False

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and self._owner == os.getpid() and process.poll() is None:
            process.kill()
            process.wait()


def _reply(line: str | None) -> tuple[bool, bool | None]:
    """``(True, verdict)`` of a worker's output ``line``; ``(False, None)`` for none or garbage (the worker
    is then stopped)."""
    try:
        verdict = json.loads(line) if line is not None else ""
    except ValueError:
        return False, None
    return (True, verdict) if verdict in (True, False, None) else (False, None)


def _pump(stream, lines: queue.Queue) -> None:
    """Copy the worker's output lines into ``lines``; None at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


WORKER = MathVerifyWorker()


def serve() -> None:
    """The worker's loop (run in the child): verdicts of math-verify, its own timeouts disabled."""
    logging.disable(logging.WARNING)  # math-verify warns that its timeouts are off: that is intended
    replies, sys.stdout = sys.stdout, sys.stderr  # whatever the library prints cannot garble a reply
    import math_verify

    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    print("ready", file=replies, flush=True)
    for line in sys.stdin:
        gold, prediction = json.loads(line)
        print(json.dumps(_verdict(math_verify, gold, prediction)), file=replies, flush=True)


def _verdict(math_verify, gold: str, prediction: str) -> bool | None:
    """``verify(gold, prediction)`` of the two answers parsed inside ``\\boxed{}``; None if either parses
    to nothing or the library fails."""
    try:
        parsed = [
            math_verify.parse(f"\\boxed{{{text}}}", parsing_timeout=None) for text in (gold, prediction)
        ]
        if not all(parsed):
            return None
        return bool(math_verify.verify(*parsed, timeout_seconds=None))
    except Exception:  # any failure inside the library is "no verdict"
        return None


def _exit_with_parent(parent: int) -> None:
    """End the worker when its parent is gone, even in the middle of a computation."""
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


if __name__ == "__math_verify_worker__":
    serve()
