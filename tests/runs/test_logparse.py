"""The mmengine log parser and the offset-based follower."""

from __future__ import annotations

import math
import os

from workbench.runs.events import group_samples
from workbench.runs.follow import read_scalars, timestamp_dirs
from workbench.runs.logparse import LogFollower, LogParser, parse_file, split_sample

FILE_LINE = ("2026/11/23 10:37:44 - mmengine - INFO - Iter(train) [10/20]  lr: 6.7101e-04  eta: 0:00:00  "
             "time: 0.0188  data_time: 0.0105  grad_norm: 1.2390  loss: 6.0306")
CONSOLE_LINE = FILE_LINE[len("2026/"):]
SAMPLE_BLOCK = [
    "2026/11/23 10:37:44 - mmengine - INFO - after_train_iter in EvaluateChatHook.",
    "2026/11/23 10:37:45 - mmengine - INFO - Sample output:",
    "<|im_start|>user",
    "你是谁<|im_end|>",
    "<|im_start|>assistant",
    "我是Tutu的小助手<|im_end|>",
    "",
    "2026/11/23 10:37:45 - mmengine - INFO - Sample output:",
    "<|im_start|>user",
    "Who are you?<|im_end|>",
    "<|im_start|>assistant",
    "I am Tutu",
    "and I help.<|im_end|>",
    "",
    "2026/11/23 10:37:46 - mmengine - INFO - Saving checkpoint at 10 iterations",
]


def feed_all(lines: list[str], **kw) -> list:
    parser = LogParser(**kw)
    events = [e for line in lines for e in parser.feed(line)]
    return events + parser.finish()


def test_file_and_console_formats_give_the_same_metrics():
    a, = feed_all([FILE_LINE])
    b, = feed_all([CONSOLE_LINE])
    assert a.ts == "2026/11/23 10:37:44" and b.ts == "11/23 10:37:44"
    for ev in (a, b):
        assert (ev.iter, ev.max_iters, ev.lr, ev.loss, ev.grad_norm) == (10, 20, 6.7101e-04, 6.0306, 1.2390)
        assert (ev.time, ev.data_time, ev.eta, ev.memory) == (0.0188, 0.0105, "0:00:00", None)


def test_metrics_without_grad_norm_with_memory_and_a_long_eta():
    # DeepSpeed runs log no grad_norm; CUDA runs log memory; long runs print eta as "1 day, 2:03:04".
    line = ("11/23 10:37:44 - mmengine - INFO - Iter(train) [  100/90000]  lr: 2.0000e-04  eta: 1 day, 2:03:04  "
            "time: 1.2000  data_time: 0.0100  memory: 15872  loss: 1.2345  tflops: 80.1")
    ev, = feed_all([line])
    assert ev.grad_norm is None and ev.memory == 15872 and ev.eta == "1 day, 2:03:04"
    assert ev.iter == 100 and ev.max_iters == 90000 and ev.extra == {"tflops": 80.1}


def test_sample_blocks_split_prompt_from_answer_and_belong_to_the_last_iteration():
    events = feed_all([FILE_LINE, *SAMPLE_BLOCK])
    samples = [e for e in events if e.kind == "sample"]
    assert [(s.iteration, s.phase, s.input, s.answer) for s in samples] == [
        (10, "after_train_iter", "你是谁", "我是Tutu的小助手"),
        (10, "after_train_iter", "Who are you?", "I am Tutu\nand I help."),
    ]
    assert samples[0].prompt == "<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n"
    assert [e.iteration for e in events if e.kind == "checkpoint"] == [10]
    assert list(group_samples(events)) == [10]


def test_split_sample_knows_other_templates_and_leaves_unknown_text_whole():
    llama3 = ("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant"
              "<|end_header_id|>\n\nHello!<|eot_id|>")
    assert split_sample(llama3)[0::2] == ("Hi", "Hello!")
    assert split_sample("<|User|>:你好<eoh>\n<|Bot|>:你好呀<eoa>")[0::2] == ("你好", "你好呀")
    assert split_sample("no template here") == (None, "", "no template here")


def test_console_capture_errors_tracebacks_oom_and_nan_loss():
    lines = [
        "11/23 10:37:44 - mmengine - INFO - Iter(train) [3/20]  lr: 1.0e-03  eta: 0:00:01  time: 0.1  "
        "data_time: 0.01  loss: nan",
        "/x/y.py:11: UserWarning: something odd",
        "  warnings.warn(...)",
        "Traceback (most recent call last):",
        '  File "train.py", line 1, in <module>',
        "    main()",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "sft.py", line 9, in forward',
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "11/23 10:37:45 - mmengine - ERROR - something broke",
    ]
    events = feed_all(lines)
    errors = [(e.error, e.message) for e in events if e.kind == "error"]
    assert errors == [
        ("nan_loss", "loss is nan at iter 3/20"),
        ("oom", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
        ("error", "something broke"),
    ]
    assert math.isnan(events[0].loss) and events[0].to_dict()["loss"] == "nan"
    assert [e.message for e in events if e.kind == "warning"] == ["UserWarning: something odd"]
    tb = next(e for e in events if e.kind == "error" and e.error == "oom")
    assert "During handling" in tb.detail and tb.iteration == 3


def test_skipping_mmengine_records_keeps_only_console_only_lines():
    lines = [CONSOLE_LINE, "11/23 10:37:45 - mmengine - INFO - Sample output:", "<|im_start|>user",
             "Traceback (most recent call last):", '  File "a.py", line 1', "ValueError: bad"]
    events = feed_all(lines, mmengine_records=False)
    assert [(e.kind, getattr(e, "message", "")) for e in events] == [("error", "ValueError: bad")]


def test_follower_reads_only_appended_bytes_and_waits_for_whole_lines(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(FILE_LINE + "\n" + FILE_LINE.replace("[10/20]", "[11/20]")[:50], encoding="utf-8")
    f = LogFollower(log)
    assert [e.iter for e in f.poll()] == [10]
    assert f.offset == len(FILE_LINE) + 1  # the half-written line is left for later
    with open(log, "a", encoding="utf-8") as out:
        out.write(FILE_LINE.replace("[10/20]", "[11/20]")[50:] + "\n")
    before = f.bytes_read
    assert [e.iter for e in f.poll()] == [11]
    # The second poll read from the stored offset: the unparsed tail and the new bytes, nothing older.
    assert f.bytes_read - before == log.stat().st_size - (len(FILE_LINE) + 1)
    assert f.poll() == [] and f.behind == 0


def test_follower_starts_over_when_the_log_is_truncated(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(FILE_LINE + "\n" + FILE_LINE + "\n", encoding="utf-8")
    f = LogFollower(log)
    assert len(f.poll()) == 2
    log.write_text(CONSOLE_LINE + "\n", encoding="utf-8")
    assert [e.ts for e in f.poll()] == ["11/23 10:37:44"]


def test_follower_finish_takes_a_last_line_without_newline(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes((FILE_LINE + "\n" + "\n".join(SAMPLE_BLOCK[:6])).encode())
    f = LogFollower(log)
    assert [e.kind for e in f.poll()] == ["metrics"]  # the sample block is still open
    assert [(e.kind, getattr(e, "answer", None)) for e in f.finish()] == [("sample", "我是Tutu的小助手")]
    assert f.offset == os.path.getsize(log)


def test_real_tiny_run_log_parses_and_losses_equal_scalars(tiny_run_dir):
    (_, folder), = timestamp_dirs(tiny_run_dir)
    events = parse_file(folder / f"{folder.name}.log")
    metrics = [e for e in events if e.kind == "metrics"]
    assert [m.iter for m in metrics] == list(range(1, 61))
    scalars = read_scalars(folder / "vis_data" / "scalars.json")
    assert sorted(scalars) == list(range(1, 61))
    for m in metrics:
        assert abs(m.loss - scalars[m.iter]["loss"]) <= 5.01e-5, m.iter
        assert abs(m.grad_norm - scalars[m.iter]["grad_norm"]) <= 5.01e-5, m.iter
        assert math.isclose(m.lr, scalars[m.iter]["lr"], rel_tol=1e-4)
    groups = group_samples(events)
    assert sorted(groups) == [0, 10, 20, 30, 40, 50, 60]
    assert {s.phase for s in groups[0]} == {"before_train"}
    assert [s.input for s in groups[10]] == ["你是谁", "Who are you?", "中国的首都是哪里？", "What is the capital of Germany?"]
    assert {s.phase for s in groups[60]} == {"after_train_iter", "after_train"}  # 4 + 4
    assert all(s.answer and "<|im_end|>" not in s.answer for s in events if s.kind == "sample")
    assert [e.iteration for e in events if e.kind == "checkpoint"] == [10, 20, 30, 40, 50, 60]
    assert [e.iteration for e in events if e.kind == "train_end"] == [60]
    assert not [e for e in events if e.kind == "error"]
