"""Checkers: what must hold in every simulated run, checked while it runs.

* **Reference equality** (:class:`OutputChecker`): every segment that lands in an output
  stream is compared, item by item (msgpack-canonical equality), with the same seqs of
  the fault-free reference run — a lost, duplicated, reordered or changed item is
  caught at the step that wrote it. At the end every stream must have the reference's
  length and be sealed if it was.
* **Fencing** (:class:`FencingChecker`): once the holder of a newer lease has written a
  stream, a seal or a checkpoint of an execution, no older holder's write may land.
* **Errors**: an execution failing (ConflictError, NondeterminismError, GapError, a store
  error the runtime did not survive, ...) is a violation the moment it is recorded.
* **Liveness** (in the world): after the faults stop and every worker heals, the run
  must finish within a bound.

Streams whose values depend on recorded effects (``ctx.now()``, ``ctx.random()``,
``ctx.uuid()``, directly or through an input) differ legitimately from the reference;
they are checked by replaying the final log instead (:func:`replay_violations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from perper import codec
from perper.errors import SimulationError
from perper.runtime.records import EFFECTS_SUFFIX, FAILED, is_internal_stream
from perper.store.base import encode_segment, segment_items
from perper.store.memory import MemoryStore
from perper.streamref import StreamRef

#: Bytes before a segment's msgpack array (its checksum).
SEGMENT_HEADER = len(encode_segment([])) - len(codec.canonical([]))


class ViolationKind(StrEnum):
    """What a checker found (the first word of a violation's report)."""

    OUTPUT_MISMATCH = "output-mismatch"
    EXTRA_ITEM = "extra-item"
    MISSING_ITEMS = "missing-items"
    NOT_SEALED = "not-sealed"
    UNEXPECTED_STREAM = "unexpected-stream"
    FENCING = "fencing"
    LIVENESS = "liveness"
    RUN_STATUS = "run-status"
    REPLAY_DIVERGENCE = "replay-divergence"
    STORE_ERROR_NOT_TOLERATED = "store-error-not-tolerated"
    WORKER_ERROR = "worker-error"
    STEP_BUDGET = "step-budget"
    DEADLOCK = "deadlock"
    NONDETERMINISM = "nondeterminism"
    CONFLICT = "conflict"
    GAP = "gap"
    EXECUTION_FAILED = "execution-failed"


@dataclass(frozen=True)
class Violation:
    """The first thing that went wrong in a simulated run.

    Attributes:
        kind: ``output-mismatch``, ``extra-item``, ``missing-items``, ``not-sealed``,
            ``unexpected-stream``, ``nondeterminism``, ``conflict``, ``gap``,
            ``execution-failed``, ``store-error-not-tolerated``, ``worker-error``,
            ``fencing``, ``liveness``, ``run-status``, ``replay-divergence``,
            ``step-budget``, ``deadlock``, ``refused``.
        message: what happened, in words.
        stream, seq, expected, actual: where and what, when it is about an item.
        step, time: the simulation step and virtual time it was detected at.
        worker: the worker whose action showed it, if any.
    """

    kind: ViolationKind
    message: str
    stream: str | None = None
    seq: int | None = None
    expected: Any = None
    actual: Any = None
    step: int = 0
    time: float = 0.0
    worker: str | None = None

    def describe(self) -> str:
        where = f"step {self.step}, t={self.time:.4f}s" + (
            f", worker {self.worker}" if self.worker else ""
        )
        lines = [f"{self.kind} ({where}): " + self.message]
        if self.stream is not None:
            lines.append(
                f"  stream: {self.stream}" + (f", seq {self.seq}" if self.seq is not None else "")
            )
        if self.kind in (
            ViolationKind.OUTPUT_MISMATCH,
            ViolationKind.EXTRA_ITEM,
            ViolationKind.MISSING_ITEMS,
        ):
            lines.append(f"  expected: {_short(self.expected)}")
            lines.append(f"  actual:   {_short(self.actual)}")
            if self.kind == ViolationKind.OUTPUT_MISMATCH:
                from perper.diff import structural_diff

                diff = structural_diff(self.expected, self.actual)
                if diff:
                    lines.append("  diff:")
                    lines.extend("    " + line for line in diff[:10])
        return "\n".join(lines)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_kind(error_text: str) -> ViolationKind:
    """Classify a stored execution error (a traceback) into a violation kind."""
    last = error_summary(error_text)
    for name, kind in (
        ("NondeterminismError", ViolationKind.NONDETERMINISM),
        ("ConflictError", ViolationKind.CONFLICT),
        ("GapError", ViolationKind.GAP),
        ("StoreUnavailableError", ViolationKind.STORE_ERROR_NOT_TOLERATED),
    ):
        if name in last:
            return kind
    return ViolationKind.EXECUTION_FAILED


def error_summary(error_text: str) -> str:
    """The exception part of a traceback: its last ``Name: message`` line and the indented
    lines that continue the message."""
    lines = error_text.rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index] and not lines[index].startswith(" "):
            return "\n".join(lines[index:])
    return lines[-1] if lines else ""


# -------------------------------------------------------------------- reference


@dataclass
class Reference:
    """What the fault-free run produced.

    Attributes:
        outputs: canonical bytes of every item, per output stream (internal streams and
            effect-dependent streams left out).
        items: the decoded items, for messages.
        sealed: the streams that were sealed.
        tainted: streams whose values depend on recorded effects (not compared item by item).
        heads: the length of every non-internal stream, tainted ones included.
        run_status: the run's final status.
        steps, virtual_time: the size of the fault-free run.
        label: what the reference is, in messages.
    """

    outputs: dict[str, list[bytes]] = field(default_factory=dict)
    items: dict[str, list[Any]] = field(default_factory=dict)
    sealed: set[str] = field(default_factory=set)
    tainted: set[str] = field(default_factory=set)
    heads: dict[str, int] = field(default_factory=dict)
    run_status: str = "done"
    steps: int = 0
    virtual_time: float = 0.0
    #: What the reference is, in messages ("the fault-free run", "the recorded run").
    label: str = "the fault-free run"
    #: (stream, seq, count) -> the msgpack array a segment of the reference's items at
    #: ``seq .. seq + count - 1`` encodes to: built on first use and kept, so the seeds
    #: of one Simulation (which share its reference) build each one once.
    segments: dict[tuple[str, int, int], bytes] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    async def from_store(
        cls,
        store: MemoryStore,
        run: str,
        *,
        trimmed: dict[str, list[tuple[int, int, bytes]]] | None = None,
    ) -> Reference:
        """The reference of ``run`` in ``store``; ``trimmed`` holds the segments trims
        deleted from ephemeral streams during the run (``World.trimmed``)."""
        ref = cls()
        # The run and the agent instances it started ({run}.{app}-{i}, named below it).
        runs = [run] + [
            key for key, _ in await store.meta_scan("runs") if key.startswith(run + ".")
        ]
        executions: dict[str, Any] = {}
        infos = []
        for name in runs:
            for key, meta in await store.meta_scan("executions", prefix=name + "/"):
                executions[key] = meta.value
            infos.extend(await store.streams(prefix=name + "/"))
        kinds: dict[str, set[str]] = {}
        for info in infos:
            if info.name.endswith(EFFECTS_SUFFIX) and info.head > 0:
                recorded = {effect[0] async for _, effect in store.read(info.name)}
                kinds[info.name[: -len(EFFECTS_SUFFIX)]] = recorded
        # Effects that differ between runs: the clock and randomness. Agent-state reads
        # differ only in instances where such values were written.
        random_kinds = {"now", "random", "uuid"}
        writes = {"agent_state.set", "agent_state.update", "agent_state.remove"}
        effects = {key for key, found in kinds.items() if found & random_kinds}
        noisy_runs = {
            executions[k]["run"] for k in effects if k in executions and kinds[k] & writes
        }
        effects |= {
            key
            for key, found in kinds.items()
            if key in executions
            and executions[key]["run"] in noisy_runs
            and found & {"agent_state.get", "agent_state.update"}
        }
        tainted: set[str] = set()
        launcher_tainted = any(
            v["kind"] == "launcher" and v["run"] == run and k in effects
            for k, v in executions.items()
        )
        changed = True
        while changed:
            changed = False
            for key, value in executions.items():
                if key in tainted:
                    continue
                parent = value.get("parent")
                if (
                    launcher_tainted
                    or key in effects
                    or (parent is not None and parent in tainted)  # started or called by it
                    or any(  # it got a result that depends on effects
                        v.get("parent") == key and k in tainted for k, v in executions.items()
                    )
                    or any(ref_ in tainted for ref_ in _refs(codec.unpack(value["params"])))
                ):
                    tainted.add(key)
                    changed = True
        ref.tainted = tainted
        for info in infos:
            if is_internal_stream(info.name):
                continue
            ref.heads[info.name] = info.head
            if info.sealed:
                ref.sealed.add(info.name)
            if info.name in tainted:
                continue
            first = await store.first_seq(info.name)
            items: list[Any] = []
            if first:
                gone = sorted((trimmed or {}).get(info.name, []))
                for seq, count, data in gone:
                    items.extend(segment_items(data)[max(len(items) - seq, 0) : count])
                if len(items) < first:
                    raise SimulationError(
                        f"stream {info.name!r} was trimmed below seq {first} but the "
                        f"simulator kept only {len(items)} of those items"
                    )
                items = items[:first]
            items += [item async for _, item in store.read(info.name, first)]
            ref.items[info.name] = items
            ref.outputs[info.name] = [codec.canonical(item) for item in items]
        entry = await store.meta_get("runs", run)
        ref.run_status = entry.value["status"] if entry else "missing"
        return ref


def _array_header(count: int) -> bytes:
    """The msgpack header of an array of ``count`` values."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 0x10000:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


#: The msgpack headers of arrays of 0 to 15 values.
_SMALL_HEADERS = tuple(bytes((0x90 | count,)) for count in range(16))


def _refs(value: Any) -> list[str]:
    if isinstance(value, StreamRef):
        return [value.stream]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in _refs(v)]
    return []


# --------------------------------------------------------------------- online


class OutputChecker:
    """Compares every landed segment with the reference (see the module docstring)."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def on_segment(
        self, stream: str, seq: int, data: bytes, count: int | None = None
    ) -> Violation | None:
        if "#" in stream or stream in self.reference.tainted:
            return None
        expected = self.reference.outputs.get(stream)
        if expected is None:
            return Violation(
                ViolationKind.UNEXPECTED_STREAM,
                f"stream {stream!r} is not in {self.reference.label}",
                stream=stream,
                seq=seq,
            )
        if count is not None and count > 0 and seq + count <= len(expected):
            # A segment's array is the canonical encodings of its items one after the
            # other (msgpack values delimit themselves): equal bytes, equal items — no
            # decoding on the usual path; anything else is looked at item by item.
            segments = self.reference.segments
            key = (stream, seq, count)
            packed = segments.get(key)
            if packed is None:
                header = _SMALL_HEADERS[count] if count < 16 else _array_header(count)
                packed = segments[key] = header + b"".join(expected[seq : seq + count])
            if len(data) == SEGMENT_HEADER + len(packed) and data.endswith(packed):
                return None
        items = segment_items(data)
        for offset, item in enumerate(items):
            position = seq + offset
            if position >= len(expected):
                return Violation(
                    ViolationKind.EXTRA_ITEM,
                    f"{stream!r} got an item at seq {position}, but {self.reference.label} has only "
                    f"{len(expected)} items (a duplicate or an invented item)",
                    stream=stream,
                    seq=position,
                    expected=None,
                    actual=item,
                )
            if codec.canonical(item) != expected[position]:
                return Violation(
                    ViolationKind.OUTPUT_MISMATCH,
                    f"{stream!r} holds another item at seq {position} than {self.reference.label} "
                    "(lost, duplicated, reordered or changed output)",
                    stream=stream,
                    seq=position,
                    expected=self.reference.items[stream][position],
                    actual=item,
                )
        return None

    def final(self, heads: dict[str, int], sealed: set[str]) -> Violation | None:
        ref = self.reference
        for stream in sorted(ref.heads):
            head = heads.get(stream, 0)
            if stream in ref.tainted:
                if stream in ref.sealed and stream not in sealed:
                    return Violation(
                        ViolationKind.NOT_SEALED, f"{stream!r} was never finished", stream=stream
                    )
                continue
            if head < ref.heads[stream]:
                return Violation(
                    ViolationKind.MISSING_ITEMS,
                    f"{stream!r} ends with {head} items; {ref.label} has {ref.heads[stream]}",
                    stream=stream,
                    seq=head,
                    expected=ref.items[stream][head],
                    actual=None,
                )
            if stream in ref.sealed and stream not in sealed:
                return Violation(
                    ViolationKind.NOT_SEALED,
                    f"{stream!r} has all its items but was never sealed",
                    stream=stream,
                )
        for stream in sorted(heads):
            if stream not in ref.heads and "#" not in stream:
                return Violation(
                    ViolationKind.UNEXPECTED_STREAM,
                    f"stream {stream!r} is not in {ref.label}",
                    stream=stream,
                )
        return None


class FencingChecker:
    """Once a newer lease holder wrote to an execution's stream, seal or checkpoint, an
    older holder's write must not land. Lease epochs are learnt from the lease table's
    writes, not from what the writer claims to carry."""

    def __init__(self) -> None:
        self._claims: dict[str, dict[str, int]] = {}
        self._landed: dict[str, tuple[int, str]] = {}
        #: Changes whenever what the checker holds changes. A write it passed
        #: (:meth:`on_write` returned None) passes again, changing nothing, while this
        #: stays the same: a caller may skip repeating it.
        self.version = 0

    def on_lease(self, execution: str, value: Any) -> None:
        owner = value.get("owner")
        if owner is not None:
            claims = self._claims.get(execution)
            if claims is None:
                claims = self._claims[execution] = {}
            epoch = int(value["epoch"])
            if claims.get(owner) != epoch:  # a lease renewal claims nothing new
                claims[owner] = epoch
                self.version += 1

    def on_write(self, execution: str, what: str, writer: str) -> Violation | None:
        claims = self._claims.get(execution)
        epoch = claims.get(writer) if claims is not None else None
        if epoch is None:
            return None
        landed = self._landed
        last = landed.get(what)
        if last is None:
            landed[what] = (epoch, writer)
            self.version += 1
        elif epoch >= last[0]:
            if epoch != last[0] or writer != last[1]:  # else it is already what landed last
                landed[what] = (epoch, writer)
                self.version += 1
        elif last[1] != writer:
            return Violation(
                ViolationKind.FENCING,
                f"{writer} (lease epoch {epoch} on {execution!r}) wrote {what!r} after {last[1]} "
                f"(epoch {last[0]}) had: a stale lease holder's write landed (fencing ignored)",
                stream=what,
            )
        return None


def failed_execution(value: dict[str, Any]) -> Violation | None:
    """A violation for an execution record written with status failed."""
    if value.get("status") != FAILED:
        return None
    error = value.get("error") or ""
    kind = error_kind(error)
    summary = error_summary(error)
    hint = ""
    if kind == ViolationKind.NONDETERMINISM:
        hint = (
            "\n  (the function is not a pure function of its inputs, ctx.state and recorded "
            "effects — e.g. it keeps memory in local variables while declaring "
            "recovery='checkpoint')"
        )
    elif kind == ViolationKind.STORE_ERROR_NOT_TOLERATED:
        hint = (
            "\n  (the runtime failed the execution on a transient store error instead of "
            "dropping it and retrying under its lease)"
        )
    return Violation(
        kind,
        f"execution {value['id']!r} ({value['function']}) failed: {summary}{hint}",
        stream=value["id"],
    )
