"""progress_bar (core/progress_bar.py): a tqdm bar on a terminal, meter lines in a log when asked, else silence."""

import io

from sae.core.progress_bar import _NoBar, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_when_stderr_is_not_a_terminal():
    stream = io.StringIO()
    with progress_bar(10, "samples", stream=stream) as bar:
        bar.update(10)
    assert isinstance(bar, _NoBar)
    assert stream.getvalue() == ""


def test_no_bar_when_disabled_even_on_a_terminal():
    assert isinstance(progress_bar(10, "samples", enabled=False, stream=Terminal()), _NoBar)


def test_a_bar_on_a_terminal_counts_what_is_done():
    stream = Terminal()
    with progress_bar(10, "samples", unit="sample", stream=stream) as bar:
        bar.update(4)
        assert bar.n == 4
    assert "samples" in stream.getvalue()


def test_off_a_terminal_a_job_gets_plain_meter_lines():
    stream = io.StringIO()
    with progress_bar(10, "samples", unit="sample", stream=stream, log_every_s=0.0) as bar:
        bar.update(4)
        bar.update(6)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("samples:  40% 4/10") and lines[-1].startswith("samples: 100% 10/10"), lines
    assert len(lines) == 3 and "\r" not in stream.getvalue()


def test_eval_stages_move_one_bar_with_the_stage_as_description():
    from sae.evaluation.harness import _Timer

    class Recorder(_NoBar):
        def __init__(self):
            self.events = []

        def set_description(self, text):
            self.events.append(text)

        def update(self, count=1):
            self.events.append(count)

    bar = Recorder()
    timer = _Timer(bar)
    for stage in ("test_pass", "figures"):
        with timer(stage):
            pass
    assert bar.events == ["test_pass", 1, "figures", 1]
    assert set(timer.seconds) == {"test_pass", "figures"}
