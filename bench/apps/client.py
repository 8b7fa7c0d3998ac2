"""Producer entry point, run inside each system's own interpreter.

python client.py MODULE bulk N CHUNK          -> prints {"seconds": ...}
python client.py MODULE singles N INTERVAL W  -> prints {"sent": N}
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> None:
    module = importlib.import_module(argv[0])
    command, args = argv[1], argv[2:]
    if command == "bulk":
        seconds = module.bulk_enqueue(int(args[0]), int(args[1]))
        print(json.dumps({"seconds": seconds}))
    elif command == "singles":
        module.enqueue_singles(int(args[0]), float(args[1]), int(args[2]))
        print(json.dumps({"sent": int(args[0])}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
