"""How a function's stdout/stderr lines are captured (``local_runtime.logs``): every sink gets them,
and ``sys.stdout`` is replaced only while a function runs, then put back, whoever swapped it meanwhile."""

from __future__ import annotations

import gc
import io
import json
import sys
import threading
import weakref
from contextlib import redirect_stdout
from pathlib import Path

from local_runtime import logs


class Kept:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def keep(self, function: str, line: str, kind: str) -> None:
        self.lines.append((function, line, kind))


def test_a_function_s_lines_reach_the_sink_and_the_terminal_and_stdout_is_put_back() -> None:
    terminal, kept = io.StringIO(), Kept()
    with redirect_stdout(terminal), logs.listening(logs.Sink(kept.keep)):
        print("the command's own line")
        with logs.running("SendMessageFunction"):
            sys.stdout.write('{"level": "INFO", "mess')  # one line in two writes
            sys.stdout.write('age": "hi"}\n\n')
            print("a print", flush=True)
        assert sys.stdout is terminal
        print("after")

    assert terminal.getvalue() == 'the command\'s own line\n{"level": "INFO", "message": "hi"}\n\na print\nafter\n'
    assert kept.lines == [
        ("SendMessageFunction", '{"level": "INFO", "message": "hi"}', "PRINT"),
        ("SendMessageFunction", "a print", "PRINT"),
    ]


def test_without_a_sink_nothing_is_replaced() -> None:
    terminal = io.StringIO()
    with redirect_stdout(terminal), logs.running("SendMessageFunction"):
        assert sys.stdout is terminal


def test_a_stream_swapped_in_and_closed_meanwhile_is_never_written_to_again() -> None:
    """What CliRunner and pytest's capture do: replace sys.stdout, restore it, close theirs."""
    terminal, later, kept = io.StringIO(), io.StringIO(), Kept()
    with redirect_stdout(terminal), logs.listening(logs.Sink(kept.keep)):
        with logs.running("ConnectFunction"):
            held = sys.stdout  # as Powertools' Logger keeps the stream it found at import
            runner = io.StringIO()
            with redirect_stdout(runner):
                held.write("during the runner\n")
                with logs.running("ConnectFunction"):
                    print("a nested invoke")
                value = runner.getvalue()
            runner.close()
            held.write("after the runner\n")
        assert sys.stdout is terminal
        with redirect_stdout(later):
            held.write("a logger's line, much later\n")

    assert value == "during the runner\na nested invoke\n"
    assert terminal.getvalue() == "after the runner\n"
    assert later.getvalue() == "a logger's line, much later\n"
    assert [line for _, line, _ in kept.lines] == ["during the runner", "a nested invoke", "after the runner"]


def test_a_tee_put_back_by_whoever_saved_it_is_gone_once_no_function_runs() -> None:
    terminal, kept = io.StringIO(), Kept()
    with redirect_stdout(terminal), logs.listening(logs.Sink(kept.keep)):
        with logs.running("ConnectFunction"):
            saved = sys.stdout  # pytest's capsys starts while a function runs...
            sys.stdout = io.StringIO()
        sys.stdout = saved  # ...and ends after it returned
        with logs.running("ConnectFunction"):
            print("next invoke")
        assert sys.stdout is terminal
    assert terminal.getvalue() == "next invoke\n"
    assert [line for _, line, _ in kept.lines] == ["next invoke"]


def test_a_tee_taken_off_stdout_is_never_freed() -> None:
    """print() on CPython < 3.13.3 holds a borrowed sys.stdout between its writes (gh-130163):
    a tee freed by another thread's swap mid-print crashed the process (a segfault in the GC)."""
    terminal = io.StringIO()
    with redirect_stdout(terminal), logs.listening(logs.Sink(Kept().keep)):
        with logs.running("ConnectFunction"):
            tee = weakref.ref(sys.stdout)
        assert sys.stdout is terminal
        gc.collect()
        assert tee() is not None
        with logs.running("ConnectFunction"):
            assert sys.stdout is tee()  # the same one again: as many tees as streams under them


def test_to_files_diverts_a_function_s_lines_to_its_file(tmp_path: Path) -> None:
    terminal = io.StringIO()
    with redirect_stdout(terminal), logs.to_files(tmp_path):
        print("the command's own line")
        with logs.running("IdleSweepFunction"):
            print('{"level": "INFO", "message": "swept"}')
            print("a plain print")
    assert terminal.getvalue() == "the command's own line\n"
    lines = [json.loads(line) for line in logs.log_file("IdleSweepFunction", tmp_path).read_text().splitlines()]
    assert lines == [
        {"level": "INFO", "message": "swept"},
        {"level": "PRINT", "message": "a plain print", "function_name": "IdleSweepFunction"},
    ]


def test_concurrent_functions_keep_their_own_lines() -> None:
    terminal, kept = io.StringIO(), Kept()
    barrier = threading.Barrier(2)

    def function(name: str) -> None:
        with logs.running(name):
            for n in range(200):
                sys.stdout.write(f"{name} ")
                if n == 0:
                    barrier.wait()
                sys.stdout.write(f"{n}\n")

    with redirect_stdout(terminal), logs.listening(logs.Sink(kept.keep)):
        threads = [threading.Thread(target=function, args=(name,)) for name in ("A", "B")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sys.stdout is terminal

    for name in ("A", "B"):
        assert [line for function, line, _ in kept.lines if function == name] == [f"{name} {n}" for n in range(200)]


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJob3N0LTEifQ.c2lnbmF0dXJl"


def test_a_container_s_line_reaches_the_sinks_as_an_in_process_one_would(tmp_path: Path) -> None:
    terminal, kept = io.StringIO(), Kept()
    line = '{"level": "INFO", "message": "token verified", "correlation_id": "c-1"}'
    with redirect_stdout(terminal), logs.listening(logs.Sink(kept.keep)):
        logs.emit("VerifyTokenFunction", line)
        logs.emit("VerifyTokenFunction", "  ")
    assert kept.lines == [("VerifyTokenFunction", line, "PRINT")]
    assert terminal.getvalue() == line + "\n"
    with redirect_stdout(terminal), logs.to_files(tmp_path) as directory:
        logs.emit("VerifyTokenFunction", line)
    assert json.loads(logs.log_file("VerifyTokenFunction", directory).read_text(encoding="utf-8")) == json.loads(line)
    assert terminal.getvalue() == line + "\n", "--logs files: not on the terminal"


def test_no_token_reaches_a_sink_or_the_terminal() -> None:
    terminal, kept = io.StringIO(), Kept()
    with redirect_stdout(terminal), logs.listening(logs.Sink(kept.keep)):
        logs.emit("ConnectFunction", f'{{"message": "headers", "authorization": "Bearer {JWT}"}}')
        with logs.running("ConnectFunction"):
            print(f"token={JWT}")
    kept_text = json.dumps(kept.lines)
    assert JWT not in kept_text
    assert kept_text.count("[REDACTED]") == 2
    assert "Bearer" not in terminal.getvalue().split("\n")[0]
    assert logs.redact("no secret here: eyJ alone, bearer") == "no secret here: eyJ alone, bearer"
