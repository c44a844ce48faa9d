"""LiteLLM proxy, pinned at 1.100.5 in its own virtual environment (its pins clash with ours).

Every model name passes through to the upstream as an OpenAI-compatible
model. Run: ``python -m benchmarks.peers.litellm_proxy UPSTREAM PORT [cancel]``; the
environment is made by ``benchmarks/install_peers.sh``. ``cancel`` sets
``general_settings.cancel_on_disconnect``, LiteLLM's opt-in to cancel a
non-streaming upstream call when its client leaves.
"""

import os
import pathlib
import sys
import tempfile

VENV = pathlib.Path(__file__).parents[2] / "build" / "litellm-venv"
VERSION = "1.100.5"

CONFIG = """
model_list:
  - model_name: "*"
    litellm_params:
      model: "openai/*"
      api_base: "{upstream}"
      api_key: "sk-sim"
litellm_settings:
  drop_params: true
  num_retries: 0
  request_timeout: 600
{general}
"""

CANCEL = """general_settings:
  cancel_on_disconnect: true
"""


def main(upstream: str, port: str, variant: str = "") -> None:
    path = pathlib.Path(tempfile.mkdtemp(prefix="litellm-peer-")) / "config.yaml"
    path.write_text(CONFIG.format(upstream=upstream, general=CANCEL if variant == "cancel" else ""))
    binary = str(VENV / "bin" / "litellm")
    env = os.environ | {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    os.execve(
        binary,
        [
            binary,
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--num_workers",
            "1",
        ],
        env,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
