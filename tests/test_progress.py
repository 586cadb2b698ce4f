"""Progress output when the console is a log file (Slurm, Ray job logs, ``> run.log``)."""
from __future__ import annotations

from mingle_bench import progress


def test_bar_prints_plain_lines_to_a_log(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with progress.progress_bar("notes · MiniLM", 4, unit="notes") as bar:
        bar.advance(1)
        bar.advance(3)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines[0].startswith("notes · MiniLM: 1/4 notes (25.0%)") and "left" in lines[0]
    assert lines[-1].startswith("notes · MiniLM: 4/4 notes (100.0%)") and "left" not in lines[-1]
    assert "\x1b[" not in err  # no terminal escapes in a log


def test_cache_hits_count_but_stay_out_of_the_rate_and_the_time_left(capsys, monkeypatch):
    """A resumed embedding: 90 of 100 notes come from the cache at once; the rate and the time
    left are those of the notes actually embedded, not 90 notes in no time."""
    clock = iter([0.0, 0.0, 10.0, 10.0, 20.0, 20.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with progress.progress_bar("notes · MiniLM", 100, unit="notes") as bar:
        bar.skip(90)   # t = 10 s: nothing embedded yet
        bar.advance(5)  # t = 20 s: 5 embedded in 20 s -> 0.25 notes/s, 5 left -> 20 s
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert "90 from the cache" in lines[0] and "0.0 notes/s" in lines[0] and "left" not in lines[0]
    assert lines[1].startswith("notes · MiniLM: 95/100 notes (95.0%), 90 from the cache, 0.2 notes/s")
    assert "about 0m20s left" in lines[1]


def test_cells_print_start_progress_and_end_to_a_log(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with progress.CellProgress(True, 2, "aupr") as prog:
        prog.skip(1)
        on_eval = prog.start_cell("mingle", 0, 100)
        on_eval(10, {"aupr": 0.25})
        prog.end_cell("mingle/0 test aupr 0.3000")
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is for results
    out = captured.err
    assert "cell mingle seed 0: started" in out
    assert "cell mingle seed 0: step 10 val aupr 0.2500 (budget 100)" in out
    assert "cell 2/2 done: mingle/0 test aupr 0.3000" in out


def test_disabled_progress_prints_nothing(capsys):
    with progress.progress_bar("x", 3, enabled=False) as bar:
        bar.advance(3)
    with progress.CellProgress(False, 1, "aupr") as prog:
        prog.start_cell("m", 0, 5)(1, {"aupr": 0.1})
        prog.end_cell("done")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
