"""Runs a batch of trials (JSON list of {id, format, path} in argv[1]): one JSON line on
stdout when each starts and when it ends, so the parent can tell which trial crashed or hung."""

from __future__ import annotations

import json
import sys
import warnings

import targets  # this folder is on sys.path when run as a script


def main() -> None:
    warnings.simplefilter("ignore")
    for job in json.loads(open(sys.argv[1]).read()):  # noqa: SIM115
        print(json.dumps({"start": job["id"]}), flush=True)
        try:
            targets.LOADERS[job["format"]](job["path"])
            outcome, detail = "loaded", ""
        except Exception as exc:  # classifying every exception is the point
            outcome = targets.classify(exc, job["path"])
            detail = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps({"id": job["id"], "outcome": outcome, "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
