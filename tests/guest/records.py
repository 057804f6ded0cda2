#!/usr/bin/env python3
"""Judge copies of the record-writing guest's disks (tests/guest/mkguest).

    records.py COPY [COPY...] --slots N [--offset BYTES]...

COPY files are given in device order (as on the guest's snapfs_rec=), each
a copy of one device as a whole: a partition's copy when the guest wrote to
a partition.  --offset is where slot 0 starts in the copies (default
1048576, the guest's snapfs_offset=); given once it holds for every COPY,
given once per COPY the n-th is the n-th COPY's (a copy of a whole disk
whose partition got the records: the partition's start plus the guest's
offset).

The guest writes record S to device S mod NDEV, slot (S div NDEV) mod N,
one at a time, each finished before the next starts.  So a copy of all the
devices at one instant, cut after record B, holds in every slot the newest
record S <= B that belongs there, or nothing (zeros) in a slot that has had
none yet; the records found are then exactly A..B with A = 1 before the
first wrap and A = B - NDEV*N + 1 after it.  Anything else is a copy that
was not taken at one instant, or a damaged one.

Exit 0, printing "consistent: records A..B", when every slot holds what the
cut after the newest record found predicts.  Exit 1, printing "torn: WHY"
(and the first few bad slots), when a block is not a whole record (lines
that differ, garbage, a block half zeros), a record sits in a slot or on a
device not its own, records of two boots are mixed, a slot holds a record
older or newer than the cut predicts, or there is no record at all.
Exit 2 on a usage error, a COPY that cannot be read or is too short, or
records written for another number of devices or slots than given.
"""

import argparse
import re
import sys

BLOCK = 4096
LINE = 128
LINES = BLOCK // LINE
RECORD_RE = re.compile(
    rb"snapfs-record run=([0-9a-f]{8}) seq=([0-9]{12}) dev=([0-9]{3})/([0-9]{3}) "
    rb"slot=([0-9]{6})/([0-9]{6})\.{53}\n"
)
ZERO = bytes(BLOCK)
SHOWN = 5


class Usage(Exception):
    pass


def parse_block(block):
    """(run, seq, dev, ndev, slot, nslots), None for zeros, or a str saying
    why the block is not a whole record."""
    if block == ZERO:
        return None
    line = block[:LINE]
    if block != line * LINES:
        for i in range(1, LINES):
            if block[i * LINE:(i + 1) * LINE] != line:
                what = "zeros" if block[i * LINE:(i + 1) * LINE] == bytes(LINE) else "other bytes"
                return f"not a whole record: line {i} (byte {i * LINE}) holds {what}"
    m = RECORD_RE.fullmatch(line)
    if not m:
        return f"not a record: {line[:40]!r}..."
    run = m.group(1).decode()
    seq, dev, ndev, slot, nslots = (int(m.group(i)) for i in range(2, 7))
    return (run, seq, dev, ndev, slot, nslots)


def predicted(dev, slot, ndev, nslots, last):
    """The record a cut after record LAST puts in slot SLOT of device DEV:
    the largest S <= LAST with S mod NDEV = DEV and (S div NDEV) mod NSLOTS
    = SLOT, S >= 1; None if there is none yet."""
    if last < dev:
        return None
    qmax = (last - dev) // ndev
    if qmax < slot:
        return None
    q = slot + (qmax - slot) // nslots * nslots
    s = q * ndev + dev
    return s if s >= 1 else None


def read_copies(paths, offsets, nslots):
    copies = []
    for path, offset in zip(paths, offsets):
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(nslots * BLOCK)
        except OSError as e:
            raise Usage(f"cannot read {path}: {e.strerror}")
        if len(data) != nslots * BLOCK:
            raise Usage(f"{path}: {len(data)} bytes at offset {offset}, "
                        f"not the {nslots * BLOCK} of {nslots} slots")
        copies.append([data[i * BLOCK:(i + 1) * BLOCK] for i in range(nslots)])
    return copies


def judge(paths, offsets, nslots):
    """(consistent, message, details)"""
    ndev = len(paths)
    copies = read_copies(paths, offsets, nslots)
    bad = []
    found = {}  # (dev, slot) -> seq
    runs = {}
    for dev, blocks in enumerate(copies):
        for slot, block in enumerate(blocks):
            where = f"device {dev} ({paths[dev]}) slot {slot}"
            r = parse_block(block)
            if r is None:
                continue
            if isinstance(r, str):
                bad.append(f"{where}: {r}")
                continue
            run, seq, rdev, rndev, rslot, rnslots = r
            if (rndev, rnslots) != (ndev, nslots):
                raise Usage(f"{where}: record {seq} was written for {rndev} device(s) "
                            f"of {rnslots} slots, not the {ndev} of {nslots} given")
            if rdev != dev or rslot != slot:
                bad.append(f"{where}: record {seq} of device {rdev} slot {rslot}")
                continue
            if seq < 1 or seq % ndev != dev or (seq // ndev) % nslots != slot:
                bad.append(f"{where}: record {seq} does not belong in this slot")
                continue
            runs.setdefault(run, []).append(where)
            found[(dev, slot)] = seq
    if bad:
        return False, f"{len(bad)} block(s) not whole records of their slot", bad
    if len(runs) > 1:
        return False, f"records of {len(runs)} boots: " + ", ".join(
            f"run {r} in {len(w)} slot(s), e.g. {w[0]}" for r, w in sorted(runs.items())), []
    if not found:
        return False, "no records at all", []
    last = max(found.values())
    first = min(found.values())
    for dev in range(ndev):
        for slot in range(nslots):
            where = f"device {dev} ({paths[dev]}) slot {slot}"
            want = predicted(dev, slot, ndev, nslots, last)
            got = found.get((dev, slot))
            if got == want:
                continue
            if got is None:
                bad.append(f"{where}: empty, a cut after record {last} predicts record {want}")
            elif want is None:
                bad.append(f"{where}: record {got}, a cut after record {last} predicts none")
            elif got < want:
                bad.append(f"{where}: record {got}, older than the {want} a cut after "
                           f"record {last} predicts (a gap)")
            else:
                bad.append(f"{where}: record {got}, newer than the {want} a cut after "
                           f"record {last} predicts (from the future)")
    # What the slot-by-slot check implies, said again as the window's shape.
    if not bad and last - first + 1 != len(found):
        bad.append(f"records {first}..{last} are {last - first + 1}, but {len(found)} "
                   "slots are filled")
    if bad:
        return False, (f"records {first}..{last} ({len(found)} filled slots) are not one "
                       f"instant's: {len(bad)} slot(s) differ from a cut after record {last}"), bad
    return True, f"records {first}..{last}", []


def main(argv):
    ap = argparse.ArgumentParser(
        description="Judge whether copies of the record-writing guest's devices are of one instant.")
    ap.add_argument("copies", nargs="+", metavar="COPY", help="a copy of each device, in device order")
    ap.add_argument("--slots", type=int, required=True, metavar="N", help="slots per device")
    ap.add_argument("--offset", type=int, action="append", metavar="BYTES",
                    help="where slot 0 starts: once for all copies, or once per COPY "
                    "(default 1048576)")
    args = ap.parse_args(argv)
    offsets = args.offset or [1 << 20]
    try:
        if args.slots < 1:
            raise Usage("--slots must be at least 1")
        if len(offsets) == 1:
            offsets = offsets * len(args.copies)
        elif len(offsets) != len(args.copies):
            raise Usage(f"{len(offsets)} --offset for {len(args.copies)} copies")
        if any(o < 0 for o in offsets):
            raise Usage("an --offset is negative")
        ok, message, details = judge(args.copies, offsets, args.slots)
    except Usage as e:
        print(f"records.py: {e}", file=sys.stderr)
        return 2
    print(("consistent: " if ok else "torn: ") + message)
    for d in details[:SHOWN]:
        print("  " + d)
    if len(details) > SHOWN:
        print(f"  ... and {len(details) - SHOWN} more")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
