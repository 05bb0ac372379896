"""A llama.cpp server with an OpenAI-compatible HTTP API, from the prebuilt ``xllamacpp`` wheel:
``python tests/llama_server.py MODEL.gguf PORT``. It listens on 127.0.0.1 until it is killed.

tests/test_llm_server.py runs it as a subprocess, so that a test can kill it the way a crash would.
"""

from __future__ import annotations

import sys
import threading


def main() -> None:
    import xllamacpp

    model, port = sys.argv[1], int(sys.argv[2])
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = 2048
    # one thread: two llama.cpp threads on a 2-core machine spin waiting for each other
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)  # serves /v1 on its own threads from here on
    print(f"listening on {server.listening_address}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
