"""A synced agent has not loaded the modules it avoids to stay small (docs/agent.md).

Each of these was measured in the running agent, and each comes back by an innocent-looking
change (a str host name, `import subprocess`, `import shutil` ...): the agent runs here in a
fresh interpreter, as the systemd unit starts it (-I -S), reaching the TLS test API server
by host name, and reports what it imported once synced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.agent.conftest import REPO, kubeconfigs
from tests.kubeapi import KubeAPIServer

# module -> what it costs and why the agent has no need of it
AVOIDED = {
    "encodings.idna": "~0.2 MiB with stringprep and unicodedata: host names go out as bytes",
    "unicodedata": "loaded by the idna codec",
    "subprocess": "~0.4 MiB with locale: tools run through os.posix_spawnp",
    "locale": "loaded by subprocess",
    "email": "~1.1 MiB: the HTTP client is edgesite_agent.wire, not http.client",
    "http.client": "see email",
    "ctypes": "~0.25 MiB: malloc controls go through _ctypes",
    "shutil": "~0.35 MiB with bz2 and lzma: runner.which",
    "typing": "annotations only, under TYPE_CHECKING",
    "dataclasses": "~0.6 MiB: plain classes",
}

SCRIPT = """
import json, logging, sys, time
sys.path.insert(0, sys.argv[1])
from edgesite_agent.agent import Agent
from edgesite_agent.config import load_config
# The proxy is off here (it would program the host); its modules are loaded all the same.
import edgesite_agent.proxy.iptables, edgesite_agent.proxy.nft, edgesite_agent.proxy.proxy

agent = Agent(load_config(sys.argv[2]), logging.getLogger("lean"))
agent.start()
deadline = time.monotonic() + 60
while not agent.status.ready() and time.monotonic() < deadline:
    time.sleep(0.05)
ready = agent.status.ready()
agent.stop()
print(json.dumps({"ready": ready, "modules": sorted(sys.modules)}))
"""


def test_synced_agent_has_not_loaded_the_modules_it_avoids(
    tls_dir: Path, api: KubeAPIServer, tmp_path: Path
) -> None:
    # By name, so that name resolution and TLS server name handling are exercised.
    by_name = api.url.replace("127.0.0.1", "localhost")
    assert by_name != api.url
    cfg = {
        "node_name": "edge-1",
        "store_path": str(tmp_path / "store.db"),
        "listen_address": "127.0.0.1",
        "listen_port": 0,
        "log_level": "WARNING",
        **kubeconfigs(tls_dir, api, tmp_path),
    }
    for key in ("kubeconfig", "proxy_kubeconfig"):
        path = Path(cfg[key])
        path.write_text(path.read_text().replace(api.url, by_name))
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(cfg))
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, str(REPO), str(config)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    report = json.loads(out.strip().splitlines()[-1])
    assert report["ready"], "the agent did not sync from the test API server"
    loaded = {m: why for m, why in AVOIDED.items() if m in report["modules"]}
    assert not loaded, f"modules the agent avoids were imported: {loaded}"
