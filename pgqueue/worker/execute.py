"""Run one job attempt and turn whatever happens into an Outcome. Never raises, except when
the worker itself cancels the attempt (shutdown, cancel), which the worker handles."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import traceback
from concurrent.futures import Executor
from typing import Any

from pgqueue.context import JobContext, _current
from pgqueue.errors import Discard, Retry, SerializationError
from pgqueue.job import Failed, Job, Outcome, Snoozed, Succeeded
from pgqueue.spec import storable_json
from pgqueue.store import dumps
from pgqueue.store.params import Unreadable

MAX_TRACEBACK = 8000


class AttemptTimeout(Exception):
    """The attempt ran over its timeout (distinct from a TimeoutError raised by the handler)."""


def describe(exc: BaseException) -> str:
    """`Type: message`, also for an exception whose __str__ itself fails (a client library's
    bug must not leave its job running: the outcome could not be written)."""
    try:
        message = str(exc)
    except Exception as err:
        message = f"<its message could not be made: {type(err).__name__}: {err}>"
    return f"{type(exc).__name__}: {message}".rstrip(": ")


def storable(text: str) -> str:
    """Text jsonb takes: a NUL character or a lone surrogate in an error's message (a C
    library's, bytes decoded with surrogateescape) written out as an escape, so that the
    error is kept and the attempt ends as any failure does, not refused by the database."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


def error_record(
    attempt: int, exc: BaseException | None, message: str | None = None
) -> dict[str, Any]:
    """One entry of a job's `errors` history (the database adds the time)."""
    text = message or (describe(exc) if exc is not None else "None")
    record: dict[str, Any] = {"attempt": attempt, "error": storable(text)}
    if exc is not None and exc.__traceback__ is not None:
        trace = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:]
        record["traceback"] = storable(trace)
    return record


def dead(attempt: int, exc: BaseException | None, message: str | None = None) -> Failed:
    return Failed(error_record(attempt, exc, message), retry_in=None)


class Raised:
    """What a sync handler raised, returned from its thread rather than raised into the
    thread's future: asyncio cannot take a StopIteration into a future (the attempt's future
    never completed and its slot stayed taken), and a GeneratorExit left the job running."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _returning(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call `fn` in a job thread: its result, or what it raised as a Raised."""
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        return Raised(exc)


class _Call:
    """Call arguments already known to fit (what Signature.bind would return)."""

    __slots__ = ("args",)
    kwargs: dict[str, Any] = {}  # noqa: RUF012 - shared and never mutated

    def __init__(self, args: list[Any]) -> None:
        self.args = args


def _plain(signature: inspect.Signature) -> str:
    """A signature without annotations, for error messages: `(a, b=1, *rest)`."""
    params = [
        p.replace(annotation=p.empty) for p in signature.parameters.values() if p.name != "ctx"
    ]
    return str(signature.replace(parameters=params, return_annotation=signature.empty))


class Runner:
    """Runs attempts for one worker: async handlers on the loop, sync ones in `threads`."""

    def __init__(self, threads: Executor) -> None:
        self.threads = threads
        # Threads of sync attempts that timed out, by (job id, attempt): their slot stays
        # taken until they return.
        self.stuck: dict[tuple[int, int], asyncio.Future[Any]] = {}

    def prepare(self, job: Job, ctx: JobContext, task: Any) -> tuple[Any, Outcome | None]:
        """The bound call arguments for `task` (None: not registered here), or the outcome
        of a poison job."""
        if task is None:
            message = f"UnknownTask: no task named {job.task!r} is registered in this worker"
            return None, dead(job.attempts, None, message)
        if type(job.args) is Unreadable:
            message = f"BadArguments: the stored arguments cannot be read: {job.args.reason}"
            return None, dead(job.attempts, None, message)
        if not job.kwargs and len(job.args) == task.plain_arity:
            return _Call(job.args), None
        args, kwargs = job.args, dict(job.kwargs)
        position = task.ctx_position
        if position is not None and position <= len(args):
            # A positional ctx goes in its place: `def f(ctx, x)` called with args [x].
            args = [*args[:position], ctx, *args[position:]]
        elif task.wants_ctx:
            kwargs["ctx"] = ctx
        try:
            bound = task.signature.bind(*args, **kwargs)
        except TypeError as exc:
            message = f"BadArguments: {task.name}{_plain(task.signature)} cannot take them: {exc}"
            return None, dead(job.attempts, None, message)
        return bound, None

    async def run(self, job: Job, ctx: JobContext, timeout: float | None, task: Any) -> Outcome:
        bound, poison = self.prepare(job, ctx, task)
        if poison is not None:
            return poison
        attempt = job.attempts
        try:
            if task.is_async:
                result = await self._run_async(task, bound, ctx, timeout)
            else:
                result = await self._run_sync(job, task, bound, ctx, timeout)
                if type(result) is Raised:
                    # Raised here, in this frame: a StopIteration that left a coroutine
                    # would come out as a RuntimeError.
                    raise result.exc
        except Retry as exc:
            return Snoozed(exc.delay)
        except Discard as exc:
            return dead(attempt, exc, f"Discarded: {exc.reason}")
        except AttemptTimeout:
            ctx._cancel()
            message = f"TimeoutError: the attempt ran over its {timeout:g}s timeout"
            return Failed(
                error_record(attempt, None, message),
                task.retry.next_run_in(attempt, job.max_attempts),
            )
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                raise  # the worker cancelled it (shutdown or cancel): the worker decides
            # The handler's own: a future it waited on was cancelled elsewhere (a sync
            # handler's concurrent CancelledError arrives as this one too). A failure.
            return Failed(
                error_record(attempt, exc), task.retry.next_run_in(attempt, job.max_attempts)
            )
        except BaseException as exc:
            return Failed(
                error_record(attempt, exc), task.retry.next_run_in(attempt, job.max_attempts)
            )
        if result is None:
            return Succeeded(None)
        try:
            text = dumps(result)
        except (TypeError, ValueError, RecursionError) as exc:  # (a value nested too deep)
            err = SerializationError(f"result of {task.name} is not JSON-serialisable: {exc}")
            return dead(attempt, err)
        try:
            return Succeeded(storable_json(text, f"the strings of the result of {task.name}"))
        except SerializationError as err:
            return dead(attempt, err)

    async def _run_async(
        self, task: Any, bound: Any, ctx: JobContext, timeout: float | None
    ) -> Any:
        token = _current.set(ctx)
        try:
            if timeout is None:
                return await task.fn(*bound.args, **bound.kwargs)
            try:
                async with asyncio.timeout(timeout) as cm:
                    result = await task.fn(*bound.args, **bound.kwargs)
            except TimeoutError:
                if cm.expired():
                    raise AttemptTimeout from None
                raise
            if cm.expired():
                # The handler caught the cancellation of its timeout and returned: the
                # attempt still ran over its time, as a sync one that returns late does.
                raise AttemptTimeout
            return result
        finally:
            _current.reset(token)

    async def _run_sync(
        self, job: Job, task: Any, bound: Any, ctx: JobContext, timeout: float | None
    ) -> Any:
        context = contextvars.copy_context()
        context.run(_current.set, ctx)
        call = functools.partial(context.run, _returning, task.fn, *bound.args, **bound.kwargs)
        # Kept on the attempt's context: a thread that timed out or was cancelled goes on
        # after its attempt ended (see transactions.discard).
        ctx._thread = self.threads.submit(call)
        future = asyncio.wrap_future(ctx._thread)
        if timeout is None:
            return await future
        # A thread cannot be interrupted: on timeout the attempt fails, ctx.cancelled turns
        # true for a handler that checks it, and the slot stays taken until the thread ends.
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if not done:
            self.stuck[(job.id, job.attempts)] = future
            raise AttemptTimeout
        return future.result()

    async def wait_thread(self, key: tuple[int, int]) -> None:
        """Wait for a timed-out sync attempt's thread to return, if there is one."""
        future = self.stuck.pop(key, None)
        if future is not None:
            await asyncio.wait({future})
