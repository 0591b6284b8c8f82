"""``python -m baselines.zoo list`` prints every released architecture with our MACs beside the reported ones;
``python -m baselines.zoo show NAME`` prints one entry's ArchConfig as JSON (``--full`` for the whole entry)."""

from __future__ import annotations

import argparse
import json
import sys

from baselines.zoo import ZooError, entries, format_table, load, table_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of every entry: MACs ours / native layout / reported / our paper")
    show = sub.add_parser("show", help="print one entry's ArchConfig JSON")
    show.add_argument("name")
    show.add_argument("--full", action="store_true", help="print the whole zoo entry, provenance included")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(format_table(table_rows(entries())))
            print("\nMACs: conv + linear, 1000 classes. 'ours' is repro.cost.flops.count_macs of the ArchConfig; "
                  "'native' the released layout where ArchConfig cannot express it; 'check' compares them with "
                  "'reported' (2% or half a printed digit; 'noted' = the entry's macs_note explains the gap).")
        else:
            entry = load(args.name)
            print(json.dumps(entry.to_dict() if args.full else entry.arch.to_dict(), indent=2))
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
