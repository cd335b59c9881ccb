"""One execution running in this process: the host behind its Context.

The order of writes is what makes every crash recoverable:

1. recorded effects, then the output items that may depend on them (``flush``);
2. then the checkpoint that covers them (``checkpoint``);
3. at the end, the final checkpoint, the seal of the output stream, the ``done`` status.

A crash between any two steps leaves a checkpoint older than the outputs; recovery
re-yields items already stored, and the idempotent append compares instead of writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from perper import codec
from perper.app import Kind, StreamFunction
from perper.context import Context
from perper.diff import structural_diff
from perper.errors import (
    ConflictError,
    EncodeError,
    FencedError,
    NondeterminismError,
    StoreUnavailableError,
)
from perper.runtime.records import DONE, EFFECTS_SUFFIX, FAILED, ExecutionRecord, child_stream
from perper.streamref import StreamRef

if TYPE_CHECKING:
    from perper.runtime.engine import Runtime

log = logging.getLogger("perper.runtime")


class Stopped(BaseException):
    """Raised inside an execution to stop it without failing it (graceful shutdown)."""


class Execution:
    """Runs one execution under a lease of epoch ``epoch``."""

    def __init__(self, runtime: Runtime, record: ExecutionRecord, epoch: int) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.record = record
        self.epoch = epoch
        self.execution = record.id
        self.run = record.run
        self.function = record.function
        self.state: dict[str, Any] = {}
        self.blocked = False
        self._prefix = record.run if record.kind == Kind.LAUNCHER else record.id
        self._calls = 0
        self._effects_stream = record.id + EFFECTS_SUFFIX
        self._recorded_effects: list[Any] = []
        self._effect_position = 0
        self._pending_effects: list[Any] = []
        self._buffer: list[Any] = []
        self._out_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flush_lock = asyncio.Lock()
        self._timed_flush: asyncio.Task[None] | None = None
        self._timed_flush_error: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None
        self._reads = 0
        self._positions: list[list[Any]] = []  # per ctx.read call: [stream, items consumed]
        self._restored: list[list[Any]] = []
        self._checkpointing = False
        self._every = runtime.checkpoint_every
        self._interval = runtime.checkpoint_interval
        self._countdown = 0
        self._checkpointed_total = 0
        self._checkpoint_due = False
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._unfenced = "ignore-fencing" in runtime._planted_bugs
        if self._unfenced:
            self.epoch = 0  # writes that every store accepts, whoever holds the lease

    # ---------------------------------------------------------------- running

    async def main(self) -> None:
        """Run the function to its end; record done or failed. Lost leases and stops end
        the task quietly, leaving the execution to be resumed."""
        runtime = self.runtime
        record = self.record
        self._task = asyncio.current_task()
        try:
            fn = runtime.app.function(record.function)
            params = codec.unpack(record.params)
            self._configure(fn)
            self._recorded_effects = [
                effect async for _, effect in self.store.read(self._effects_stream)
            ]
            if self._checkpointing:
                await self._restore()
            ctx = Context(self, logging.getLogger(f"{runtime.app.name}.{fn.name}"))
            if fn.kind == Kind.LAUNCHER:
                await fn.fn(ctx, **params)
            else:
                result = fn.fn(ctx, **params)
                if hasattr(result, "__anext__"):
                    await self._drain(result)
                else:
                    await result
            await self.checkpoint()
            if fn.kind != Kind.LAUNCHER:
                await self.store.seal(record.id, epoch=self.epoch)
            await self._set_status(DONE)
        except asyncio.CancelledError:
            error = self._timed_flush_error
            if error is None:
                raise
            if isinstance(error, (StoreUnavailableError, Stopped)):
                log.warning("execution %s paused: %s", record.id, error)
                raise Stopped() from error
            await self._fail(error)
        except Stopped:
            raise
        except StoreUnavailableError as error:
            # Transient: drop the execution here; this or another worker resumes it.
            log.warning("execution %s paused: %s", record.id, error)
            raise Stopped() from error
        except Exception as error:
            if not isinstance(error, (NondeterminismError, EncodeError, FencedError)):
                # What the function yielded before it raised is output like any other.
                with contextlib.suppress(Exception):
                    await self.flush()
            await self._fail(error)
        finally:
            for timer in (self._timer, self._checkpoint_timer):
                if timer is not None:
                    timer.cancel()

    async def _fail(self, error: BaseException) -> None:
        if isinstance(error, FencedError):
            log.warning("execution %s stopped: %s", self.execution, error)
            raise Stopped() from error
        text = "".join(traceback.format_exception(error)).rstrip()
        log.debug("execution %s failed: %s", self.execution, text)
        await self._set_status(FAILED, text)
        self.runtime._wake_up()

    def _configure(self, fn: StreamFunction) -> None:
        self._checkpointing = fn.recovery == "checkpoint"
        if fn.checkpoint_every is not None:
            self._every = fn.checkpoint_every
        if fn.checkpoint_interval is not None:
            self._interval = fn.checkpoint_interval
        if self.runtime._force_checkpoint_every is not None:
            self._every = self.runtime._force_checkpoint_every
        self._arm_checkpoint_timer()

    def _arm_checkpoint_timer(self) -> None:
        self._checkpointed_total = self._consumed_total()
        self._checkpoint_due = False
        self._reset_countdown()
        if self._checkpointing:
            if self._checkpoint_timer is not None:
                self._checkpoint_timer.cancel()
            self._checkpoint_timer = asyncio.get_running_loop().call_later(
                self._interval, self._set_checkpoint_due
            )

    def _set_checkpoint_due(self) -> None:
        self._checkpoint_due = True
        self._countdown = 0

    async def _restore(self) -> None:
        entry = await self.store.meta_get("checkpoints", self.execution)
        if entry is None:
            return
        checkpoint = entry.value
        self.state = checkpoint["state"]
        self._restored = checkpoint["positions"]
        self._checkpointed_total = sum(position for _, position in self._restored)
        self._out_seq = checkpoint["out"]
        self._effect_position = checkpoint["effects"]
        self._calls = checkpoint["calls"]

    async def _drain(self, agen: AsyncIterator[Any]) -> None:
        buffer = self._buffer
        limit = self.runtime.batch_size
        delay = self.runtime.flush_delay
        loop = asyncio.get_running_loop()
        append = buffer.append
        async for item in agen:
            append(item)
            size = len(buffer)
            if size >= limit:
                await self.flush()
                if self.runtime.stopping:
                    raise Stopped()
            elif size == 1 and self._timer is None:
                # A loop timer rather than a clock read per item; it flushes even while
                # the function awaits something else.
                self._timer = loop.call_later(delay, self._flush_on_timer)

    def _flush_on_timer(self) -> None:
        self._timer = None
        if self._timed_flush is None or self._timed_flush.done():
            self._timed_flush = asyncio.get_running_loop().create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except (Exception, Stopped) as error:
            # Fail the execution with it, wherever the function is waiting.
            self._timed_flush_error = error
            if self._task is not None:
                self._task.cancel()

    async def flush(self) -> None:
        """Make recorded effects, then buffered output items, durable (in that order, so no
        stored item depends on an effect that is not recorded)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        # Take the effects and the items together, before any await: an item yielded
        # while this flush is in flight may depend on an effect taken after it, and
        # must wait for the next flush with that effect.
        effects = self._pending_effects
        self._pending_effects = []
        items = self._buffer.copy()
        self._buffer.clear()  # in place: _drain holds a reference to this list
        try:
            if effects:
                await self._append_effects(effects)
                effects = []
            if items:
                await self._append_items(items)
                items = []
        finally:
            # Whatever was not (known to be) written goes back first in line, so nothing
            # else is written at its positions and the next flush retries it in order.
            if effects:
                self._pending_effects[0:0] = effects
            if items:
                self._buffer[0:0] = items
        # Appends to local stores never suspend: give the other executions a turn
        # after each flush, so a busy producer cannot starve its readers.
        await asyncio.sleep(0)

    async def _append_effects(self, effects: list[Any]) -> None:
        start = len(self._recorded_effects)
        try:
            await self.store.append(self._effects_stream, start, effects, epoch=self.epoch)
        except ConflictError:
            await self._raise_if_fenced(self._effects_stream)
            # Another owner (one whose lease we took over, still running) recorded these
            # effects first: they are the record. Our computation used other values, so
            # start again from the record.
            log.warning(
                "execution %s: effects were recorded concurrently; restarting", self.execution
            )
            raise Stopped() from None
        self._recorded_effects.extend(effects)

    async def _append_items(self, items: list[Any]) -> None:
        seq = self._out_seq
        if "append-without-compare" in self.runtime._planted_bugs:
            seq = max(seq, await self.store.head(self.record.id))
        try:
            await self.store.append(self.record.id, seq, items, epoch=self.epoch)
        except ConflictError as conflict:
            await self._raise_if_fenced(self.record.id)
            raise NondeterminismError(
                execution=self.execution,
                function=self.function,
                seq=conflict.seq,
                stored=conflict.stored,
                new=conflict.new,
                diff="\n".join(structural_diff(conflict.stored, conflict.new)),
            ) from None
        except EncodeError as error:
            at = seq + (error.index or 0)
            raise EncodeError(
                error.type_name, f"{self.function!r}'s item at seq {at}" + error.path[4:]
            ) from None
        self._out_seq = seq + len(items)

    async def _raise_if_fenced(self, stream: str) -> None:
        """A conflict caused by a newer owner's writes means we lost the lease."""
        current = (await self.store.info(stream)).epoch
        if current > self.epoch and not self._unfenced:
            raise FencedError(stream, self.epoch, current)

    async def checkpoint(self) -> None:
        """Flush, then save positions, output head, state, effects position and epoch."""
        early = "checkpoint-before-flush" in self.runtime._planted_bugs
        if not early:
            await self.flush()
        try:
            value = {
                "positions": self._positions,
                "out": self._out_seq + (len(self._buffer) if early else 0),
                "state": self.state,
                "effects": self._effect_position,
                "calls": self._calls,
                "epoch": self.epoch,
            }
            codec.pack(value["state"], what="ctx.state")
        except EncodeError as error:
            raise EncodeError(error.type_name, f"{self.function!r}'s {error.path}") from None
        store = self.store
        while True:
            entry = await store.meta_get("checkpoints", self.execution)
            if entry is not None and entry.value["epoch"] > self.epoch and not self._unfenced:
                raise FencedError(
                    f"checkpoint of {self.execution}", self.epoch, entry.value["epoch"]
                )
            version = entry.version if entry else 0
            if await store.meta_cas("checkpoints", self.execution, value, version=version):
                break
        if early:
            await self.flush()
        self._arm_checkpoint_timer()

    async def _set_status(self, status: str, error: str | None = None) -> None:
        store = self.store
        while True:
            entry = await store.meta_get("executions", self.execution)
            current = ExecutionRecord.from_meta(entry.value) if entry else self.record
            updated = current.with_status(status, error)
            version = entry.version if entry else 0
            if await store.meta_cas(
                "executions", self.execution, updated.to_meta(), version=version
            ):
                self.record = updated
                return

    # ------------------------------------------------------- the Context host

    async def read(
        self, stream: str, start: int | str = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]:
        store = self.store
        index = self._reads
        self._reads += 1
        if index < len(self._restored) and self._restored[index][0] == stream:
            position = self._restored[index][1]
        elif start == "live":
            position = await self._live_position(stream)
        else:
            position = int(start)
        slot = [stream, position]
        self._positions.append(slot)
        runtime = self.runtime
        while True:
            async for _, items in store.read_batches(stream, start=position):
                for item in items:
                    position += 1
                    slot[1] = position
                    yield (position - 1, item) if with_seq else item
                    # The function asks for the next item: it has finished with this one,
                    # so its state and outputs are consistent with the positions. One
                    # countdown per item; timers and stop requests zero it.
                    self._countdown -= 1
                    if self._countdown <= 0:
                        await self._boundary(position)
            info = await store.info(stream)
            if info.head > position:
                continue
            if info.sealed:
                return
            # About to block: make our own output visible first, or a cycle would stall.
            if self._checkpointing and self._consumed_since_checkpoint() > 0:
                await self.checkpoint()
            else:
                await self.flush()
            if runtime.stopping:
                await self._stop()
            self.blocked = True
            try:
                await store.wait(stream, position, timeout=None)
            finally:
                self.blocked = False

    async def _live_position(self, stream: str) -> int:
        """The head of ``stream`` now, as a recorded effect (``ctx.read(start="live")``)."""
        if self._effect_position < len(self._recorded_effects):
            return int(self.effect("live", lambda: None))
        head = await self.store.head(stream)
        return int(self.effect("live", lambda: head))

    async def _boundary(self, position: int) -> None:
        runtime = self.runtime
        if runtime._boundary_hook is not None:
            runtime._boundary_hook(self.execution, position)
        if runtime.stopping:
            await self._stop()
        if self._checkpointing and (
            self._checkpoint_due or self._consumed_since_checkpoint() >= self._every
        ):
            await self.checkpoint()
        self._reset_countdown()

    def _consumed_total(self) -> int:
        total: int = sum(slot[1] for slot in self._positions)
        return total

    def _consumed_since_checkpoint(self) -> int:
        return self._consumed_total() - self._checkpointed_total

    def _reset_countdown(self) -> None:
        if self.runtime._boundary_hook is not None or self.runtime.stopping:
            self._countdown = 1
        elif self._checkpointing:
            self._countdown = max(self._every - self._consumed_since_checkpoint(), 1)
        else:
            self._countdown = 1 << 30

    def interrupt(self) -> None:
        """Make the function stop at its next item boundary (graceful shutdown)."""
        self._countdown = 0

    async def _stop(self) -> None:
        if self._checkpointing:
            await self.checkpoint()
        else:
            await self.flush()
        raise Stopped()

    def reserve_call(self, fn: StreamFunction) -> StreamRef:
        stream = child_stream(self.runtime.app, self.function, fn, self._prefix, self._calls)
        self._calls += 1
        return StreamRef(stream)

    async def start_reserved(
        self, ref: StreamRef, fn: StreamFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StreamRef:
        params = self.runtime._pack_params(fn, fn.bind(args, kwargs))
        await self.runtime.attach(ref.stream, self.run, fn, params, parent=self.execution)
        return ref

    def effect(self, kind: str, make: Callable[[], Any]) -> Any:
        position = self._effect_position
        self._effect_position = position + 1
        if position < len(self._recorded_effects):
            recorded_kind, value = self._recorded_effects[position]
            if recorded_kind != kind:
                raise NondeterminismError(
                    execution=self.execution,
                    function=self.function,
                    seq=position,
                    stored=f"ctx.{recorded_kind}()",
                    new=f"ctx.{kind}()",
                    what="effect",
                )
            return value
        value = make()
        self._pending_effects.append([kind, value])
        return value

    def entropy_bytes(self, count: int) -> bytes:
        return self.runtime.entropy.randbytes(count)

    def entropy_float(self) -> float:
        return self.runtime.entropy.random()

    def wall_clock(self) -> float:
        return self.runtime.clock()
