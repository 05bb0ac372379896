"""python -m ui.bench - time the chat as people use it: through the launched app, not ask() alone.

Starts ``python -m ui`` in a subprocess on a free port (over the configured index, or ``--source``), so
the clients measuring it do not share its interpreter, and reports:

* 8 (``--concurrency``) questions sent at once by separate gradio_client sessions, repeated ``--rounds``
  times: whether every reply is correct (the same as ``ask()`` gives alone, and holding the gold answer
  of ``eval/qa.jsonl``), and p50/p95 time to the full answer;
* ``--questions`` (20) questions one after another: p50/p95 time to the first streamed words and to
  the full answer, through gradio_client, and with ``--browser`` also from pressing Enter in headless
  Chromium to the first words of the answer on screen.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from eval import data as eval_data
from rag import ask

from .app import Library, render_answer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear between closest ranks (numpy's default)."""
    values = sorted(values)
    pos = (len(values) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name}: p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms"
        f" (min {min(ms):.0f}, max {max(ms):.0f}, n={len(ms)})"
    )


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def concurrent_round(url: str, items, expected: list[str]) -> tuple[list[bool], list[float]]:
    clients = [client(url) for _ in items]
    barrier = threading.Barrier(len(items))
    ok: list[bool] = [False] * len(items)
    took: list[float] = [0.0] * len(items)

    def one(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        reply = clients[i].predict(items[i].question, api_name="/chat")[0]["content"]
        took[i] = time.perf_counter() - start
        gold = any(a.lower() in reply.lower() for a in items[i].answers)
        ok[i] = reply == expected[i] and gold

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, took


def sequential(url: str, questions: list[str]) -> tuple[list[float], list[float]]:
    first, full = [], []
    session = client(url)
    for q in questions:
        start = time.perf_counter()
        job = session.submit(q, api_name="/chat")
        seen = None
        for _ in job:
            seen = seen or time.perf_counter() - start
        job.result()
        full.append(time.perf_counter() - start)
        first.append(seen if seen is not None else full[-1])
    return first, full


def browser_first_words(url: str, questions: list[str]) -> list[float]:
    """From Enter to the first words of the answer on screen, timed inside the page."""
    from playwright.sync_api import sync_playwright

    # t0 is the keydown of Enter in the question box; the answer is the first bot message with text
    watch = """() => new Promise(resolve => {
        const bots = () => document.querySelectorAll('[data-testid=bot]');
        const before = bots().length;
        let t0 = null;
        document.querySelector('#rag-question textarea').addEventListener(
            'keydown', e => { if (e.key === 'Enter') t0 = performance.now(); }, {once: true});
        const obs = new MutationObserver(() => {
            const b = bots();
            if (t0 !== null && b.length > before && b[b.length - 1].innerText.trim()) {
                obs.disconnect();
                resolve(performance.now() - t0);
            }
        });
        obs.observe(document.body, {subtree: true, childList: true, characterData: true});
    })"""
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        box = page.locator("#rag-question textarea")
        box.wait_for()
        for q in questions:
            box.fill(q)
            page.evaluate(f"() => {{ window.__first = ({watch})(); }}")  # not awaited here
            box.press("Enter")
            out.append(page.evaluate("window.__first") / 1000)
            page.wait_for_timeout(900)  # let the reply finish streaming
            page.get_by_label("Clear").click()  # each question on an empty chat, as a first question
            page.wait_for_timeout(100)
        browser.close()
    return out


def start_server(source: Path | None) -> subprocess.Popen:
    """``python -m ui`` on a free port; returns once it says it is ready, with ``.url`` set."""
    port = free_port()
    cmd = [sys.executable, "-m", "ui", "--port", str(port)] + (["--source", str(source)] if source else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in server.stdout:
        if line.startswith("Chat ready at "):
            server.url = line.split()[3]
            # keep draining its output, so a full pipe never blocks it
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server
    raise RuntimeError(f"python -m ui exited with {server.wait()} before it was ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--source", type=Path, help="folder of documents (default: the configured one)")
    parser.add_argument("--concurrency", type=int, default=8, help="questions at once (default 8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of concurrent questions (default 5)")
    parser.add_argument("--questions", type=int, default=20, help="questions one by one (default 20)")
    parser.add_argument("--browser", action="store_true", help=f"also time the browser ({CHROMIUM})")
    args = parser.parse_args(argv)

    library = Library(source=args.source)
    library.load(progress=True)
    library.warm_up()
    print(f"index: {library.status()} ({library.index_dir})")
    items = [
        it
        for it in eval_data.load_dataset(Path(eval_data.__file__).with_name("qa.jsonl")).items
        if not it.history
    ]
    alone = {it.id: render_answer(ask(it.question, index=library.index)) for it in items}
    right = [it for it in items if it.answers and any(a.lower() in alone[it.id].lower() for a in it.answers)]
    batch = right[: args.concurrency]
    if len(batch) < args.concurrency:
        print(f"error: only {len(batch)} questions are answered correctly by ask() alone", file=sys.stderr)
        return 2

    server = start_server(args.source)
    try:
        url = server.url
        print(f"app: {url}")
        correct, took = [], []
        for _ in range(args.rounds):
            ok, t = concurrent_round(url, batch, [alone[it.id] for it in batch])
            correct += ok
            took += t
        print(
            f"{args.concurrency} at once x {args.rounds} rounds: {sum(correct)}/{len(correct)} correct"
            f" (same reply as ask() alone, gold answer in it): {', '.join(it.id for it in batch)}"
        )
        print(summary("  time to full answer", took))

        questions = [it.question for it in items[: args.questions]]
        first, full = sequential(url, questions)
        print(f"{len(questions)} questions one by one (gradio_client, streamed):")
        print(summary("  time to first streamed words", first))
        print(summary("  time to full answer", full))
        if args.browser:
            enter = browser_first_words(url, questions)
            print(f"{len(questions)} questions typed in headless Chromium:")
            print(summary("  Enter to first words on screen", enter))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0 if all(correct) else 1


if __name__ == "__main__":
    sys.exit(main())
