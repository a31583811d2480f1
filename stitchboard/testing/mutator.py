"""A seeded mutator over valid records: hostile variants of real-shaped input, each labelled with its
kind and with the tenant it lands in, for the fuzz test (tests/hostile/test_fuzz.py) and its long run
(bench/fuzz.py).

Valid records come from the real-shaped corpus (``tests/fixtures/corpus/*/``), the adapter fixtures
(``tests/fixtures/<source>/``) and a generated day (``stitchboard.synthetic.dataset``). A mutant is
one or more raw records derived from one valid record by one *kind* of mutation (``KINDS``).

Every mutant is placed so that what it may change is known:

* ``separate``: it lands in a tenant of its own (``HOSTILE_TENANTS``: injection strings, whitespace,
  control characters), or it *tries* to land in a valid tenant of the separate group through a
  confusion (duplicate JSON key, padded tenant name) with conversation ids of its own. Either way the
  valid tenants of the separate group must come out exactly as without it.
* ``same``: it stays in its valid tenant (of the same group) with every conversation id (and UUID)
  replaced consistently by fresh ones, so whatever it adds is its own conversation; the tenant's
  valid conversations must come out unchanged and its interval figures can only grow.

Why a seeded mutator rather than hypothesis: one check runs the whole flow into chDB (about a second
per thousand records), so the unit of a check is a stream of thousands of records, not one example;
hypothesis's search and shrinking would re-run that flow hundreds of times, and its generators are
not meant to stream 100,000 labelled records into a benchmark. ``random.Random(seed)`` makes the
same stream every run (the test asserts on a fixed seed) without a new dependency, and each record
carries its kind, so a failure is reported by kind and record.

Why one module of over 500 lines: the kinds are short functions sharing the JSON walkers and the
placement rules above them, and ``KINDS`` lists them all in one table.
"""

from __future__ import annotations

import copy
import random
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from stitchboard.adapters import ADAPTERS
from stitchboard.synthetic.dataset import FaultProfile, build_dataset

Mode = Literal["same", "separate"]
REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "corpus"
FIXTURES = REPO / "tests" / "fixtures"
FIXTURE_SOURCES: dict[str, str] = {
    "webhook": "webhook",
    "genesys": "genesys",
    "genesys_events": "genesys",
    "connect": "connect",
    "connect_agent": "connect_agent",
}
DAY = date(2026, 3, 29)
DAY_TENANTS: dict[str, str] = {"fz-day-apart": "Europe/London", "fz-day-shared": "America/New_York"}

# Tenants hostile records land in: what a broken or malicious upstream puts in the envelope.
HOSTILE_TENANTS: tuple[str, ...] = (
    "fz-hostile",
    "fz-hostile-2",
    "x\\') OR 1=1 --",
    "\\",
    "'",
    '"',
    "a'b\\c\"d",
    "fz tenant with spaces",
    "fz\ttab",
    "fz\u202eevil",
    "fz\u200bzero-width",
    "\U0001f600",
    "%_*",
    "${tenant}",
    "fz\x01control",
    "fz-" + "t" * 300,
)
CONVERSATION_KEYS = frozenset(
    {
        "conversation_id",
        "conversationId",
        "ContactId",
        "contactId",
        "InitialContactId",
        "initialContactId",
        "PreviousContactId",
        "previousContactId",
        "NextContactId",
        "RelatedContactId",
        "relatedContactId",
    }
)
CLAIM_KEYS = frozenset({"tenant", "organizationId"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$")
_EPOCH_MS = (946_684_800_000, 4_102_444_800_000)  # 2000..2100 in epoch milliseconds
_DURATION_KEY = re.compile(r"(Duration|duration|_ms$|Ms$|[Ss]econds$)")
_ENUM_KEYS = frozenset(
    {
        "event",
        "direction",
        "end_reason",
        "ended_in",
        "outcome",
        "status",
        "purpose",
        "mediaType",
        "segmentType",
        "disconnectType",
        "Channel",
        "InitiationMethod",
        "DisconnectReason",
        "EventType",
        "eventType",
        "channel",
        "initiationMethod",
        "originatingDirection",
        "systemPresence",
    }
)
_RAW_MARK = "@@fz-raw-{}@@"


# ---------------------------------------------------------------- valid records


@dataclass(frozen=True, slots=True)
class ValidRecord:
    """One valid delivery: its envelope bytes and what the checks need to know about it."""

    group: str  # "corpus/<group>", "fixtures/<directory>" or "day"
    tenant: str
    source: str
    received_at: datetime
    raw: bytes

    def envelope(self) -> dict[str, Any] | None:
        """The parsed envelope, or None when the record is not a JSON object with an object payload."""
        try:
            document = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or not isinstance(document.get("payload"), dict):
            return None
        return document


def _envelope(tenant: str, source: str, received_at: str, payload: bytes) -> bytes:
    head = {"tenant": tenant, "source": source, "received_at": received_at}
    return orjson.dumps(head)[:-1] + b',"payload":' + payload.strip() + b"}"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def corpus_records(root: Path = CORPUS) -> list[ValidRecord]:
    """Every delivery of every corpus case, in manifest order, as its case's tenant."""
    records: list[ValidRecord] = []
    for manifest in sorted(root.glob("*/manifest.json")):
        for case in orjson.loads(manifest.read_bytes())["cases"]:
            for delivery in case["deliveries"]:
                payload = (manifest.parent / delivery["file"]).read_bytes()
                raw = _envelope(case["tenant"], delivery["source"], delivery["received_at"], payload)
                at = _parse_time(delivery["received_at"])
                group = f"corpus/{manifest.parent.name}"
                records.append(ValidRecord(group, case["tenant"], delivery["source"], at, raw))
    return records


def fixture_records(root: Path = FIXTURES) -> list[ValidRecord]:
    """The adapter fixtures, one tenant per fixture directory (their tenant claims rewritten to it),
    received a minute after their latest event."""
    records: list[ValidRecord] = []
    for directory, source in FIXTURE_SOURCES.items():
        tenant = f"fz-fixtures-{directory}"
        for path in sorted((root / directory).glob("*.json")):
            payload = orjson.loads(path.read_bytes())
            _claim(payload, tenant)
            events = ADAPTERS[source](copy.deepcopy(payload), tenant, datetime(2100, 1, 1, tzinfo=UTC))
            times = [event.event_time for event in events] or [
                _parse_time(text) for text in _strings(payload) if _TIME.match(text)
            ]
            at = max(times, default=datetime(2026, 3, 29, 12, tzinfo=UTC)) + timedelta(minutes=1)
            envelope = {"tenant": tenant, "source": source, "received_at": _iso(at), "payload": payload}
            records.append(ValidRecord(f"fixtures/{directory}", tenant, source, at, orjson.dumps(envelope)))
    return records


def day_records(seed: int, scale: float, tenants: dict[str, str] = DAY_TENANTS) -> list[ValidRecord]:
    """A generated day of ``tenants`` in delivery order (re-sends, reordering and late records
    included; no malformed records: those are the mutator's job)."""
    dataset = build_dataset(tenants, DAY, seed, scale=scale, faults=FaultProfile(malformed_rate=0.0))
    records: list[ValidRecord] = []
    for delivered in dataset.delivery.records:
        document = orjson.loads(delivered.raw)
        at = _parse_time(document["received_at"])
        records.append(ValidRecord("day", document["tenant"], document["source"], at, delivered.raw))
    return records


def valid_records(seed: int, day_scale: float) -> list[ValidRecord]:
    """The corpus, the fixtures and a generated day: the valid input every fuzz run starts from."""
    return corpus_records() + fixture_records() + day_records(seed, day_scale)


def same_group(tenants: Sequence[str]) -> frozenset[str]:
    """Every other valid tenant (in sorted order) takes hostile records of its own (``same``); the
    rest take none and must come out exactly as without them. The generated day has one of each."""
    ordered = sorted(set(tenants) - set(DAY_TENANTS))
    return frozenset(ordered[1::2]) | {"fz-day-shared"}


# ---------------------------------------------------------------- JSON helpers


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


Slot = tuple[dict[str, Any] | list[Any], Any]  # (container, key or index)


def _slots(value: Any) -> list[Slot]:
    """Every (container, key) of a JSON document, depth first."""
    found: list[Slot] = []
    stack = [value]
    while stack:
        node = stack.pop()
        items: list[tuple[Any, Any]] = (
            list(node.items())
            if isinstance(node, dict)
            else list(enumerate(node))
            if isinstance(node, list)
            else []
        )
        for key, child in items:
            found.append((node, key))
            if isinstance(child, dict | list):
                stack.append(child)
    return found


def _leaves(value: Any, test: Callable[[Any, Any], bool]) -> list[Slot]:
    return [(c, k) for c, k in _slots(value) if test(k, c[k])]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    return isinstance(value, str) and bool(_TIME.match(value))


def _is_epoch_ms(key: Any, value: Any) -> bool:
    return (
        isinstance(key, str)
        and "ime" in key
        and isinstance(value, int)
        and _EPOCH_MS[0] < value < _EPOCH_MS[1]
    )


def conversation_ids(payload: Any) -> list[str]:
    """The conversation (and contact) ids a payload names."""
    return [c[k] for c, k in _slots(payload) if k in CONVERSATION_KEYS and isinstance(c[k], str) and c[k]]


def _claim(payload: Any, tenant: str) -> None:
    """Rewrite the payload's own tenant claims (webhook ``tenant``, Connect ``Tags.tenant``, Genesys
    ``organizationId``) so the record is accepted as ``tenant``."""
    for container, key in _slots(payload):
        if key in CLAIM_KEYS and isinstance(container, dict) and isinstance(container[key], str):
            container[key] = tenant


def _rekey(payload: Any, salt: str) -> None:
    """Fresh conversation ids (and every UUID, consistently), so the record is a conversation of its own."""
    ids = {
        container[key]
        for container, key in _slots(payload)
        if key in CONVERSATION_KEYS and isinstance(container, dict) and isinstance(container[key], str)
    }
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"stitchboard-fuzz:{salt}")

    def fresh(match: re.Match[str]) -> str:
        return str(uuid.uuid5(namespace, match.group(0).lower()))

    for container, key in _slots(payload):
        value = container[key]
        if isinstance(value, str):
            if value in ids and not _UUID.fullmatch(value):
                container[key] = f"{value}~{salt}"
            elif _UUID.search(value):
                container[key] = _UUID.sub(fresh, value)


def _shift_time(text: str, delta: timedelta) -> str:
    moment = datetime.fromisoformat(text) + delta
    if not (datetime(1, 1, 2, tzinfo=UTC) < moment < datetime(9999, 12, 30, tzinfo=UTC)):
        return text
    shown = moment.astimezone(UTC).isoformat(timespec="milliseconds" if "." in text else "seconds")
    return shown.replace("+00:00", "Z")


def _shift_all(payload: Any, delta: timedelta) -> None:
    """Move every timestamp of the payload (ISO text and epoch milliseconds) by ``delta``."""
    for container, key in _slots(payload):
        value = container[key]
        if _is_time(value):
            container[key] = _shift_time(value, delta)
        elif _is_epoch_ms(key, value):
            container[key] = value + int(delta / timedelta(milliseconds=1))


class _Raw:
    """JSON text orjson cannot write (NaN, 1e999, a lone surrogate), spliced in after serialising."""

    def __init__(self) -> None:
        self.tokens: list[bytes] = []

    def token(self, text: str) -> str:
        self.tokens.append(text.encode("utf-8"))
        return _RAW_MARK.format(len(self.tokens) - 1)

    def dumps(self, document: Any) -> bytes:
        raw = orjson.dumps(document)
        for index, token in enumerate(self.tokens):
            raw = raw.replace(orjson.dumps(_RAW_MARK.format(index)), token)
        return raw


# ---------------------------------------------------------------- mutation kinds


@dataclass(slots=True)
class Context:
    """What a kind works on: a deep copy of the base envelope, already placed in its tenant."""

    rng: random.Random
    envelope: dict[str, Any]
    base: ValidRecord
    mode: Mode
    salt: str
    heavy: bool  # long-run sizes (bench) rather than test sizes
    mutator: Mutator
    raw: _Raw = field(default_factory=_Raw)

    place: Callable[[dict[str, Any]], dict[str, Any]] = lambda envelope: envelope

    @property
    def payload(self) -> Any:
        return self.envelope["payload"]

    def siblings(self) -> list[dict[str, Any]]:
        """The other valid records of the base's conversation, placed like the base (same tenant, ids)."""
        return [self.place(copy.deepcopy(envelope)) for envelope in self.mutator.siblings(self.base)]

    def dumps(self, document: Any | None = None) -> bytes:
        return self.raw.dumps(self.envelope if document is None else document)

    def pick(self, test: Callable[[Any, Any], bool]) -> Slot | None:
        slots = _leaves(self.payload, test)
        return self.rng.choice(slots) if slots else None


Records = list[bytes] | None  # None: the kind does not apply to this base record
KindFn = Callable[[Context], Records]


def _truncated(ctx: Context) -> Records:
    raw = ctx.dumps()
    return [raw[: ctx.rng.randint(1, len(raw) - 1)]]


def _duplicate_key_payload(ctx: Context) -> Records:
    """A payload key written twice with different values (parsers disagree on which wins)."""
    keys = [k for k in ctx.payload if isinstance(ctx.payload[k], str | int | float)]
    if not keys:
        return None
    key = ctx.rng.choice(keys)
    twin = orjson.dumps({key: f"{ctx.payload[key]}-twin"})[1:-1]
    raw = ctx.dumps()
    at = raw.index(b'"payload":{') + len(b'"payload":{')
    return [raw[:at] + twin + b"," + raw[at:]]


def _drop_key(ctx: Context) -> Records:
    slots = [(c, k) for c, k in _slots(ctx.payload) if isinstance(c, dict)]
    if not slots:
        return None
    container, key = ctx.rng.choice(slots)
    del container[key]
    return [ctx.dumps()]


def _drop_envelope_key(ctx: Context) -> Records:
    del ctx.envelope[ctx.rng.choice(("tenant", "source", "received_at", "payload"))]
    return [ctx.dumps()]


def _type_swap(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: not isinstance(v, dict | list))
    if slot is None:
        return None
    container, key = slot
    value = container[key]
    choices: list[Any] = [[value], {"value": value}, True, 0, 1.5, "1", ""]
    if isinstance(value, str):
        choices += [12345, -1]
    elif _is_number(value):
        choices += [str(value), f"{value}ms"]
    container[key] = ctx.rng.choice([c for c in choices if type(c) is not type(value)])
    return [ctx.dumps()]


def _null_value(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: v is not None)
    if slot is None:
        return None
    slot[0][slot[1]] = None
    return [ctx.dumps()]


def _huge_number(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: _is_number(v)) or ctx.pick(lambda _k, v: isinstance(v, str))
    if slot is None:
        return None
    token = ctx.rng.choice(
        (
            "10000000000000000",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "1e30",
            "1.7976931348623157e308",
            "123456789012345678901234567890",
        )
    )
    slot[0][slot[1]] = ctx.raw.token(token)
    return [ctx.dumps()]


def _negative_number(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: _is_number(v))
    if slot is None:
        return None
    container, key = slot
    container[key] = ctx.rng.choice((-1, -abs(container[key]) - 1, -(10**16), -9223372036854775808))
    return [ctx.dumps()]


def _nan_like(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: _is_number(v)) or ctx.pick(lambda _k, v: v is None or isinstance(v, str))
    if slot is None:
        return None
    token = ctx.rng.choice(
        ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"NaN"', '"Infinity"', "-0.0", "1e-400")
    )
    slot[0][slot[1]] = ctx.raw.token(token)
    return [ctx.dumps()]


def _duration_1e16(ctx: Context) -> Records:
    """A duration field (Connect ``CustomerHoldDuration``, Genesys ``heldDurationMs`` …) of 10^16."""
    slot = ctx.pick(
        lambda k, v: isinstance(k, str) and bool(_DURATION_KEY.search(k)) and (v is None or _is_number(v))
    )
    if slot is None:
        return None
    slot[0][slot[1]] = ctx.rng.choice((10**16, 5 * 10**15, 10**18, 2**62))
    return [ctx.dumps()]


def _overflowing_holds(ctx: Context) -> Records:
    """Two records of one conversation whose hold durations each fit Int64 but whose sum does not."""
    agent = ctx.payload.get("Agent") if ctx.base.source == "connect" else None
    if not isinstance(agent, dict) or not isinstance(ctx.payload.get("ContactId"), str):
        return None
    first = ctx.payload["ContactId"]
    agent["CustomerHoldDuration"] = 5 * 10**15
    agent["NumberOfHolds"] = 1
    one = ctx.dumps()
    second = copy.deepcopy(ctx.envelope)
    second["payload"]["ContactId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.salt}:second"))
    second["payload"]["InitialContactId"] = first
    second["payload"]["PreviousContactId"] = first
    return [one, ctx.dumps(second)]


def _shifted(delta: timedelta, *, received_too: bool) -> KindFn:
    def kind(ctx: Context) -> Records:
        if not any(_is_time(v) or _is_epoch_ms(k, v) for c, k in _slots(ctx.payload) for v in (c[k],)):
            return None
        _shift_all(ctx.payload, delta)
        if received_too and isinstance(ctx.envelope.get("received_at"), str):
            ctx.envelope["received_at"] = _shift_time(ctx.envelope["received_at"], delta)
        return [ctx.dumps()]

    return kind


def _to_2099(ctx: Context) -> Records:
    times = [_parse_time(v) for v in _strings(ctx.payload) if _is_time(v)]
    if not times:
        return None
    _shift_all(ctx.payload, datetime(2099, 6, 1, tzinfo=UTC) - min(times))
    return [ctx.dumps()]


def _zone_less(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: _is_time(v))
    if slot is None:
        return None
    container, key = slot
    container[key] = re.sub(r"(Z|[+-]\d\d:?\d\d)$", "", container[key])
    return [ctx.dumps()]


def _bad_time(ctx: Context) -> Records:
    slot = ctx.pick(lambda k, v: _is_time(v) or _is_epoch_ms(k, v))
    if slot is None:
        return None
    slot[0][slot[1]] = ctx.rng.choice(
        (
            "1970-01-01T00:00:00Z",
            "2999-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-03-29T25:00:00Z",
            "yesterday",
            1774771200,
            -1,
            "2026-03-29T10:00:00+99:00",
        )
    )
    return [ctx.dumps()]


def _time_reversal(ctx: Context) -> Records:
    """Two timestamps of one record swapped: something ends before it starts."""
    slots = _leaves(ctx.payload, lambda _k, v: _is_time(v))
    distinct = [s for s in slots if s[0][s[1]] != slots[0][0][slots[0][1]]] if slots else []
    if not distinct:
        return None
    a, b = ctx.rng.choice(slots), ctx.rng.choice(distinct)
    a[0][a[1]], b[0][b[1]] = b[0][b[1]], a[0][a[1]]
    return [ctx.dumps()]


def _long_string(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: isinstance(v, str))
    if slot is None:
        return None
    size = ctx.rng.choice((10_000, 100_000, 300_000) + ((900_000, 1_100_000) if ctx.heavy else ()))
    slot[0][slot[1]] = slot[0][slot[1]] + ctx.rng.choice("xé\u4e2d") * size
    return [ctx.dumps()]


_UNICODE = (
    "\u202e",
    "\u200b",
    "\ufeff",
    "e\u0301",
    "\U0001f4a9",
    "\u0130",
    "\uff41",
    "\u2028",
    "\ud7ff",
    "Ω",
)
_CONTROL = ("\x00", "\x07", "\x1b[31m", "\r\n", "\x7f", "\t", "\x85", "\x1f")


def _odd_characters(pool: tuple[str, ...]) -> KindFn:
    def kind(ctx: Context) -> Records:
        slot = ctx.pick(lambda _k, v: isinstance(v, str) and not _is_time(v))
        if slot is None:
            return None
        container, key = slot
        text, extra = container[key], ctx.rng.choice(pool)
        cut = ctx.rng.randint(0, len(text))
        container[key] = text[:cut] + extra + text[cut:]
        return [ctx.dumps()]

    return kind


def _lone_surrogate(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: isinstance(v, str))
    if slot is None:
        return None
    slot[0][slot[1]] = ctx.raw.token(ctx.rng.choice(('"\\ud800"', '"a\\udfffb"', '"\\u0000"')))
    return [ctx.dumps()]


def _deep_nesting(ctx: Context) -> Records:
    slot = ctx.pick(lambda _k, v: True)
    if slot is None:
        return None
    depth = ctx.rng.choice((63, 65, 200, 1100, 5000))
    opener, closer = ctx.rng.choice((("[", "]"), ('{"a":', "}")))
    slot[0][slot[1]] = ctx.raw.token(opener * depth + "1" + closer * depth)
    return [ctx.dumps()]


def _tenant_padded(ctx: Context) -> Records:
    """A separate-group tenant's name with whitespace around it (and its claim unpadded)."""
    target = ctx.mutator.confusable_tenant(ctx.rng)
    ctx.envelope["tenant"] = (
        ctx.rng.choice((" ", "\t", "\u00a0", "\n", "\u3000")) + target + ctx.rng.choice(("", " ", "\r\n"))
    )
    _claim(ctx.payload, target)
    return [ctx.dumps()]


def _tenant_duplicate_key(ctx: Context) -> Records:
    """The envelope's tenant written twice: a hostile tenant first, a separate-group tenant last."""
    target = ctx.mutator.confusable_tenant(ctx.rng)
    _claim(ctx.payload, target)
    ctx.envelope["tenant"] = target
    raw = ctx.dumps()
    hostile = orjson.dumps({"tenant": ctx.rng.choice(HOSTILE_TENANTS)})[1:-1]
    return [b"{" + hostile + b"," + raw[1:]] if ctx.rng.random() < 0.5 else [raw[:-1] + b"," + hostile + b"}"]


def _tenant_hostile(ctx: Context) -> Records:
    """A tenant string made to break SQL or dashboards, with a matching claim (so it is accepted)."""
    tenant = ctx.rng.choice(HOSTILE_TENANTS)
    ctx.envelope["tenant"] = tenant
    _claim(ctx.payload, tenant)
    return [ctx.dumps()]


def _tenant_claim_mismatch(ctx: Context) -> Records:
    if not any(k in CLAIM_KEYS for c, k in _slots(ctx.payload)):
        return None
    _claim(ctx.payload, ctx.mutator.confusable_tenant(ctx.rng))
    return [ctx.dumps()]


def _swapped_ids(ctx: Context) -> Records:
    """The conversation ids of another tenant's record, in this one."""
    slots = [(c, k) for c, k in _slots(ctx.payload) if k in CONVERSATION_KEYS and isinstance(c[k], str)]
    if not slots:
        return None
    foreign = ctx.mutator.foreign_conversation_id(ctx.rng, ctx.base.tenant)
    for container, key in slots:
        container[key] = foreign
    return [ctx.dumps()]


def _many_holds(ctx: Context) -> Records:
    """An agent leg with thousands of holds (webhook ``holds``; Genesys hold segments)."""
    payload = ctx.payload
    count = ctx.rng.choice((2_000, 8_000, 16_000)) if ctx.heavy else ctx.rng.choice((500, 1_000, 2_000))
    if (
        ctx.base.source == "webhook"
        and isinstance(payload.get("holds"), list)
        and _is_time(payload.get("answered_at"))
    ):
        start = _parse_time(payload["answered_at"])
        payload["holds"] = [
            {
                "start": _iso(start + timedelta(milliseconds=2 * i)),
                "end": _iso(start + timedelta(milliseconds=2 * i + 1)),
            }
            for i in range(count)
        ]
        return [ctx.dumps()]
    segments = [
        c for c, k in _slots(payload) if k == "segments" and isinstance(c, dict) and isinstance(c[k], list)
    ]
    interact = [
        (session, seg)
        for session in segments
        for seg in session["segments"]
        if isinstance(seg, dict)
        and seg.get("segmentType") == "interact"
        and _is_time(seg.get("segmentStart"))
    ]
    if not interact:
        return None
    session, seg = ctx.rng.choice(interact)
    start = _parse_time(seg["segmentStart"])
    session["segments"] = list(session["segments"]) + [
        {
            "segmentType": "hold",
            "segmentStart": _iso(start + timedelta(milliseconds=2 * i)),
            "segmentEnd": _iso(start + timedelta(milliseconds=2 * i + 1)),
        }
        for i in range(count)
    ]
    return [ctx.dumps()]


def _many_steps(ctx: Context) -> Records:
    """An IVR path of thousands of steps, every node name distinct."""
    payload = ctx.payload
    if (
        ctx.base.source != "webhook"
        or not str(payload.get("event", "")).startswith("contact.")
        or not _is_time(payload.get("started_at"))
    ):
        return None
    count = ctx.rng.choice((5_000, 15_000)) if ctx.heavy else ctx.rng.choice((300, 1_000))
    start = _parse_time(payload["started_at"])
    payload["ivr"] = {
        "steps": [
            {"node": f"n{i}-{ctx.salt}", "at": _iso(start + timedelta(milliseconds=i))} for i in range(count)
        ],
        "outcome": "contained",
    }
    payload["ended_in"] = "ivr"
    payload["ended_at"] = _iso(start + timedelta(milliseconds=count))
    return [ctx.dumps()]


def _many_distinct_values(ctx: Context) -> Records:
    """One conversation whose records together carry more than 65,535 distinct values (IVR nodes)."""
    payload = ctx.payload
    if (
        not ctx.heavy
        or ctx.base.source != "webhook"
        or not str(payload.get("event", "")).startswith("contact.")
        or not _is_time(payload.get("started_at"))
    ):
        return None
    start = _parse_time(payload["started_at"])
    records = []
    for part in range(5):
        steps = [
            {"node": f"{part}.{i}", "at": _iso(start + timedelta(milliseconds=part * 14_000 + i))}
            for i in range(14_000)
        ]
        variant = copy.deepcopy(ctx.envelope)
        variant["payload"]["ivr"] = {"steps": steps, "outcome": "contained"}
        variant["payload"]["ended_in"] = "ivr"
        variant["payload"]["ended_at"] = _iso(start + timedelta(minutes=5))
        records.append(ctx.dumps(variant))
    return records


def _disagreeing_redelivery(ctx: Context) -> Records:
    """The record, then the same conversation again with some of its times moved by hours or days."""
    slots = _leaves(ctx.payload, lambda _k, v: _is_time(v))
    if not slots:
        return None
    first = ctx.dumps()
    for container, key in ctx.rng.sample(slots, max(1, len(slots) // 2)):
        hours = ctx.rng.choice((-72, -5, -1, 1, 6, 48))
        container[key] = _shift_time(
            container[key], timedelta(hours=hours, milliseconds=ctx.rng.randint(0, 999))
        )
    for container, key in _leaves(
        ctx.payload, lambda k, v: isinstance(k, str) and bool(_DURATION_KEY.search(k)) and _is_number(v)
    ):
        container[key] = container[key] * ctx.rng.choice((0, 3, 1000))
    return [first, ctx.dumps()]


def _disagreeing_records(ctx: Context) -> Records:
    """Every record of one conversation, one of them with some times moved by hours or days, so the
    records disagree with each other (each is consistent on its own)."""
    envelopes = [ctx.envelope, *ctx.siblings()]
    if len(envelopes) < 2:
        return None
    victim = ctx.rng.choice(envelopes)
    slots = _leaves(victim["payload"], lambda _k, v: _is_time(v))
    if not slots:
        return None
    delta = timedelta(hours=ctx.rng.choice((-72, -26, -3, 3, 26, 72)))
    for container, key in ctx.rng.sample(slots, ctx.rng.randint(1, len(slots))):
        container[key] = _shift_time(container[key], delta)
    return [ctx.dumps(envelope) for envelope in envelopes]


def _redelivered_many(ctx: Context) -> Records:
    raw = ctx.dumps()
    return [raw] * ctx.rng.choice((2, 10, 50))


def _wrong_source(ctx: Context) -> Records:
    ctx.envelope["source"] = ctx.rng.choice(
        ("genesys", "connect", "connect_agent", "webhook", "Genesys", " webhook", "", "kafka", "genesys\x00")
    )
    return [ctx.dumps()]


def _received_at_anywhere(ctx: Context) -> Records:
    """A rejected record (truncated payload) whose received_at lands in any month of a century."""
    year, month = ctx.rng.randint(2000, 2099), ctx.rng.randint(1, 12)
    ctx.envelope["received_at"] = f"{year:04d}-{month:02d}-15T12:00:00Z"
    raw = ctx.dumps()
    return [raw[: len(raw) - ctx.rng.randint(2, 10)]]


def _not_utf8(ctx: Context) -> Records:
    raw = ctx.dumps()
    cut = ctx.rng.randint(0, len(raw))
    bad = ctx.rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe9", b"\xf8\x88\x80\x80\x80"))
    return [raw[:cut] + bad + raw[cut:]]


def _framing(ctx: Context) -> Records:
    """A byte-order mark, leading blank lines, trailing garbage or a second document."""
    raw = ctx.dumps()
    return [
        ctx.rng.choice(
            (
                b"\xef\xbb\xbf" + raw,
                b"\n\r\n " + raw + b"\n",
                raw + b"x",
                raw + raw,
                raw + b"\x00",
                b"[" + raw + b"]",
            )
        )
    ]


def _oversize(ctx: Context) -> Records:
    ctx.envelope["padding"] = "p" * (1024 * 1024 + ctx.rng.randint(0, 4096))
    return [ctx.dumps()]


def _enum_swap(ctx: Context) -> Records:
    slot = ctx.pick(lambda k, v: k in _ENUM_KEYS and isinstance(v, str))
    if slot is None:
        return None
    container, key = slot
    value = container[key]
    container[key] = ctx.rng.choice(
        (
            value.upper(),
            value.lower(),
            value.title(),
            f" {value} ",
            value + "x",
            "UNKNOWN",
            "",
            "agent.call",
            "voice",
        )
    )
    return [ctx.dumps()]


def _empty_identifier(ctx: Context) -> Records:
    slot = ctx.pick(
        lambda k, v: (
            isinstance(k, str)
            and (k in CONVERSATION_KEYS or k.endswith(("Id", "_id", "agent", "queue")))
            and isinstance(v, str)
        )
    )
    if slot is None:
        return None
    slot[0][slot[1]] = ctx.rng.choice(("", " ", "\u200b", "\t\n", "null", "None", "0"))
    return [ctx.dumps()]


def _array_explosion(ctx: Context) -> Records:
    """A list of the record repeated thousands of times (participants, segments, steps …)."""
    slot = ctx.pick(lambda _k, v: isinstance(v, list) and bool(v))
    if slot is None:
        return None
    container, key = slot
    times = ctx.rng.choice((100, 1000)) if not ctx.heavy else ctx.rng.choice((1000, 5000))
    copies = container[key] * times
    container[key] = copies[: max(1, 400_000 // max(1, len(orjson.dumps(container[key][0]))))]
    return [ctx.dumps()]


def _score_out_of_range(ctx: Context) -> Records:
    slot = ctx.pick(lambda k, v: isinstance(k, str) and "core" in k and (_is_number(v) or v is None))
    if slot is None:
        return None
    slot[0][slot[1]] = ctx.rng.choice((-5, 101, 1000, 10**12, 99.5, -0.1))
    return [ctx.dumps()]


def _unknown_fields(ctx: Context) -> Records:
    """Extra fields a newer vendor version might add: must be ignored, not trusted, never a crash."""
    slots = [c for c, _k in _slots(ctx.payload) if isinstance(c, dict)] or [ctx.payload]
    target = ctx.rng.choice(slots)
    target[ctx.rng.choice(("__proto__", "extra", "constructor", "$where", "x" * 200))] = ctx.rng.choice(
        ({"nested": [1, 2]}, "x", None, 1e300)
    )
    return [ctx.dumps()]


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of mutation; ``weight`` in the suite's run, ``heavy_weight`` in the long run."""

    name: str
    make: KindFn
    weight: float = 1.0
    heavy_weight: float = 1.0
    tenant_kind: bool = False  # chooses its own tenant (always ``separate``)


KINDS: tuple[Kind, ...] = (
    Kind("truncated_json", _truncated),
    Kind("duplicate_json_key", _duplicate_key_payload),
    Kind("drop_key", _drop_key),
    Kind("drop_envelope_key", _drop_envelope_key, 0.5, 0.5),
    Kind("type_swap", _type_swap),
    Kind("null_value", _null_value),
    Kind("huge_number", _huge_number),
    Kind("negative_number", _negative_number),
    Kind("nan_like_number", _nan_like),
    Kind("duration_1e16", _duration_1e16),
    Kind("overflowing_hold_sum", _overflowing_holds),
    Kind("date_2099", _to_2099),
    Kind("future_37_days", _shifted(timedelta(days=37), received_too=False)),
    Kind("future_37_days_consistent", _shifted(timedelta(days=37), received_too=True)),
    Kind("past_400_days", _shifted(timedelta(days=-400), received_too=False)),
    Kind("past_400_days_consistent", _shifted(timedelta(days=-400), received_too=True)),
    Kind("future_2_hours", _shifted(timedelta(hours=2), received_too=False)),
    Kind("zone_less_time", _zone_less),
    Kind("impossible_time", _bad_time),
    Kind("time_reversal", _time_reversal),
    Kind("long_string", _long_string, 0.3, 0.5),
    Kind("unicode_text", _odd_characters(_UNICODE)),
    Kind("control_characters", _odd_characters(_CONTROL)),
    Kind("lone_surrogate", _lone_surrogate),
    Kind("deep_nesting", _deep_nesting),
    Kind("tenant_padded", _tenant_padded, tenant_kind=True),
    Kind("tenant_duplicate_key", _tenant_duplicate_key, tenant_kind=True),
    Kind("tenant_hostile_string", _tenant_hostile, tenant_kind=True),
    Kind("tenant_claim_mismatch", _tenant_claim_mismatch),
    Kind("swapped_ids_across_tenants", _swapped_ids),
    Kind("thousands_of_holds", _many_holds, 0.05, 0.02),
    Kind("thousands_of_steps", _many_steps, 0.1, 0.02),
    Kind("many_distinct_values", _many_distinct_values, 0.0, 0.002),
    Kind("disagreeing_redelivery", _disagreeing_redelivery),
    Kind("disagreeing_records", _disagreeing_records),
    Kind("redelivered_many_times", _redelivered_many, 0.3, 0.3),
    Kind("wrong_source", _wrong_source),
    Kind("received_at_any_month", _received_at_anywhere),
    Kind("not_utf8", _not_utf8),
    Kind("framing", _framing),
    Kind("oversize", _oversize, 0.1, 0.1),
    Kind("enum_swap", _enum_swap),
    Kind("empty_identifier", _empty_identifier),
    Kind("array_explosion", _array_explosion, 0.2, 0.1),
    Kind("score_out_of_range", _score_out_of_range),
    Kind("unknown_fields", _unknown_fields),
)


# ---------------------------------------------------------------- the mutator


@dataclass(frozen=True, slots=True)
class Mutant:
    """One hostile input: its kind, how it is placed, the valid record it came from, its records."""

    index: int
    kind: str
    mode: Mode
    base: ValidRecord
    tenant: str  # the tenant its envelope names (before any confusion)
    records: tuple[bytes, ...]


class Mutator:
    """Hostile variants of ``valid``; the same seed and inputs give the same mutants in the same order."""

    def __init__(
        self,
        valid: Sequence[ValidRecord],
        same_tenants: frozenset[str],
        seed: int,
        *,
        heavy: bool = False,
        kinds: Sequence[str] | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._heavy = heavy
        self._same = same_tenants
        self._kinds = [
            k
            for k in KINDS
            if (kinds is None or k.name in kinds) and (k.heavy_weight if heavy else k.weight) > 0
        ]
        if not self._kinds:
            raise ValueError(f"no applicable kind among {kinds}")
        self._weights = [k.heavy_weight if heavy else k.weight for k in self._kinds]
        self._bases = [(record, envelope) for record in valid if (envelope := record.envelope()) is not None]
        tenants = sorted({record.tenant for record in valid})
        self._confusable = [tenant for tenant in tenants if tenant not in same_tenants]
        self._ids: dict[str, list[str]] = {}
        self._conversations: dict[tuple[str, str], list[tuple[ValidRecord, dict[str, Any]]]] = {}
        for record, envelope in self._bases:
            ids = conversation_ids(envelope["payload"])
            self._ids.setdefault(record.tenant, []).extend(ids)
            for conversation in set(ids):
                self._conversations.setdefault((record.tenant, conversation), []).append((record, envelope))
        self._count = 0

    def confusable_tenant(self, rng: random.Random) -> str:
        """A valid tenant that takes no hostile records on purpose (a confusion must not reach it)."""
        return rng.choice(self._confusable)

    def siblings(self, base: ValidRecord) -> list[dict[str, Any]]:
        """The envelopes of the other valid records sharing a conversation id with ``base``."""
        envelope = base.envelope()
        ids = conversation_ids(envelope["payload"]) if envelope is not None else []
        found: dict[int, dict[str, Any]] = {}
        for conversation in ids:
            for record, other in self._conversations.get((base.tenant, conversation), ()):
                if record is not base:
                    found[id(record)] = other
        return list(found.values())

    def foreign_conversation_id(self, rng: random.Random, tenant: str) -> str:
        own = set(self._ids.get(tenant, ()))
        others = [t for t in sorted(self._ids) if t != tenant and self._ids[t]]
        candidates = [i for i in self._ids[rng.choice(others)] if i not in own]
        return rng.choice(candidates) if candidates else f"foreign-{rng.random()}"

    def next(self) -> Mutant:
        """The next mutant (a kind is drawn, then a base record it applies to)."""
        kind = self._rng.choices(self._kinds, self._weights)[0]
        for _ in range(50):
            record, envelope = self._rng.choice(self._bases)
            mutant = self._apply(kind, record, envelope)
            if mutant is not None:
                return mutant
        for record, envelope in self._rng.sample(self._bases, len(self._bases)):  # a rare fit
            mutant = self._apply(kind, record, envelope)
            if mutant is not None:
                return mutant
        raise RuntimeError(f"kind {kind.name} applies to no valid record")

    def _apply(self, kind: Kind, record: ValidRecord, envelope: dict[str, Any]) -> Mutant | None:
        salt = f"fz{self._count}"
        mode: Mode = "same" if record.tenant in self._same and not kind.tenant_kind else "separate"
        hostile = self._rng.choice(HOSTILE_TENANTS)

        def place(document: dict[str, Any]) -> dict[str, Any]:
            if mode == "same" or kind.tenant_kind:
                _rekey(document["payload"], salt)
            if mode == "separate" and not kind.tenant_kind:
                document["tenant"] = hostile
                _claim(document["payload"], hostile)
            return document

        context = Context(self._rng, place(copy.deepcopy(envelope)), record, mode, salt, self._heavy, self)
        context.place = place
        records = kind.make(context)
        if records is None:
            return None
        tenant_named = str(context.envelope.get("tenant"))
        mutant = Mutant(self._count, kind.name, mode, record, tenant_named, tuple(records))
        self._count += 1
        return mutant
