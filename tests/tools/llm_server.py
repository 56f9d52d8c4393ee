"""Serves a GGUF model over llama.cpp's own OpenAI-compatible HTTP server (xllamacpp), for
the test suite's real-LLM tests.

Usage: llm_server.py MODEL.gguf PORT CONTEXT_TOKENS
Prints "listening http://127.0.0.1:PORT" once the model is loaded, then serves until killed.
One thread and one slot: fastest on a busy 2-core machine, and requests queue.
"""

import sys
import time

import xllamacpp


def main(model, port, context):
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.port = int(port)
    params.hostnames = ["127.0.0.1"]
    params.n_parallel = 1
    params.n_ctx = int(context)
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    print("listening", server.listening_address, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:4])
