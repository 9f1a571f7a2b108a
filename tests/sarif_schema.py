"""The official SARIF 2.1.0 JSON schema, taken from the npm package that ships it.

Microsoft's @microsoft/jest-sarif package carries `sarif-2.1.0-rtm.5.json`, the OASIS schema.
It is fetched once with `npm pack` into tests/.cache (git-ignored); `.ci/run` does the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

CACHE = Path(__file__).parent / ".cache"
SCHEMA = CACHE / "sarif-2.1.0-rtm.5.json"
PACKAGE = "@microsoft/jest-sarif@1.0.0-beta.0"
MEMBER = "package/lib/schemas/sarif-2.1.0-rtm.5.json"


def sarif_schema() -> dict:
    if not SCHEMA.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed, so the SARIF schema cannot be fetched")
        CACHE.mkdir(exist_ok=True)
        packed = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=CACHE, capture_output=True, text=True,
                                timeout=120)
        if packed.returncode != 0:
            pytest.skip(f"npm pack {PACKAGE} failed: {packed.stderr.strip()[:200]}")
        archive = CACHE / packed.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            SCHEMA.write_bytes(tar.extractfile(MEMBER).read())
        archive.unlink()
    return json.loads(SCHEMA.read_text())
