"""Chaos delivery: the sandbox's Firehose delivering the way AWS may, not the way it usually does.

``s3tstream sandbox start --delivery chaos --seed N`` (``SandboxServer(delivery="chaos", seed=N)``,
or ``POST /_sandbox/firehose/delivery {"mode": "chaos", "seed": N}`` on a running sandbox). The
default, ``ordered``, delivers every record once, in order, copy-on-write. In chaos mode:

- duplicates: a share of the records (``DUPLICATE_SHARE``) is delivered twice, the copy in the
  same flush or in the next one. Kinesis Data Streams for DynamoDB may deliver a change more than
  once, in a different order than the item changes (the DynamoDB guide's Kinesis Data Streams
  page, https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/kds.html, which says to
  order by ApproximateCreationDateTime); Firehose reading a Kinesis stream is at-least-once.
- reordering across buffers: a share of the records (``HOLDBACK_SHARE``) is held back to the next
  flush, so it reaches the table after newer changes; records within a flush are shuffled
  (the Firehose Iceberg guide: records are not delivered in order,
  https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-destination.html).
- merge-on-read: each flush is one commit of data files plus equality delete files
  (``row_delta``), so several changes to one key in one commit follow the Iceberg spec (an
  equality delete never removes a row of its own commit), instead of being applied one by one.

Everything is drawn from ``random.Random(f"{seed}:{stream}")``: one seed replays the same
decisions for the same records in the same flushes. A record is held back at most once, and a
copy is never copied again, so a drain always terminates.
"""

from __future__ import annotations

import dataclasses
import random

from s3tstream.sandbox.dataplane.contract import SourceRecord

MODES = ("ordered", "chaos")
DUPLICATE_SHARE = 0.1
HOLDBACK_SHARE = 0.1


@dataclasses.dataclass(frozen=True)
class DeliveryMode:
    mode: str = "ordered"
    seed: int = 0

    @property
    def chaos(self) -> bool:
        return self.mode == "chaos"

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "seed": self.seed}


ORDERED = DeliveryMode()


def parse(mode: object, seed: object = 0) -> DeliveryMode:
    """A validated DeliveryMode; ValueError naming the field otherwise."""
    if mode not in MODES:
        raise ValueError(f"delivery must be one of {', '.join(MODES)}, not {mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            seed = int(str(seed))
        except ValueError:
            raise ValueError(f"seed must be an integer, not {seed!r}") from None
    return DeliveryMode(str(mode), seed)


def of(server: object) -> DeliveryMode:
    """The delivery mode of a SandboxServer (ordered when it has none)."""
    mode = getattr(server, "delivery", None)
    return mode if isinstance(mode, DeliveryMode) else ORDERED


@dataclasses.dataclass
class Mix:
    batch: list[SourceRecord]  # delivered in this flush (shuffled, copies included)
    later: list[SourceRecord]  # back into the buffer: held back, or copies for the next flush
    duplicated: int
    held_back: int


class Chaos:
    """One stream's chaos: its random source and the records it already held back or copied."""

    def __init__(self, mode: DeliveryMode, stream: str) -> None:
        self.mode = mode
        self.rng = random.Random(f"{mode.seed}:{stream}")
        self.touched: set[str] = set()  # record ids held back once, and every copy's id

    def mix(self, records: list[SourceRecord]) -> Mix:
        batch: list[SourceRecord] = []
        later: list[SourceRecord] = []
        held = dup = 0
        for r in records:
            if r.record_id in self.touched:
                batch.append(r)
                continue
            if len(records) > 1 and self.rng.random() < HOLDBACK_SHARE:
                self.touched.add(r.record_id)
                later.append(r)
                held += 1
                continue
            batch.append(r)
            if self.rng.random() < DUPLICATE_SHARE:
                # a distinct recordId: Firehose numbers the records of each invocation itself
                copy = dataclasses.replace(r, record_id=r.record_id[:-6] + f"{len(self.touched) % 999_999 + 1:06d}")
                self.touched.add(copy.record_id)
                (batch if self.rng.random() < 0.5 else later).append(copy)
                dup += 1
        self.rng.shuffle(batch)
        return Mix(batch, later, dup, held)
