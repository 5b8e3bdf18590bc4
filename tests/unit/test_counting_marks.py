"""The counting plugin's output parser and the per-frame arithmetic (pi_setup/counting/marks.py)."""

import pytest

from pi_setup.counting import marks
from pi_setup.counting.predict import fit
from pi_setup.counting.table import format_counts

HEAD = "insn_count 1 arm simd fp int ldst branch"


def _line(kind, code, simd, fp, integer, ldst, branch):
    total = simd + fp + integer + ldst + branch
    return f"{kind} {code} {total} {simd} {fp} {integer} {ldst} {branch}"


def _frames(frames, start=1000, pre=(0, 0, 10, 5, 1), infer=(50, 20, 30, 40, 10),
            post=(0, 5, 20, 10, 5), first_extra=500):  # fmt: skip
    """Plugin output of FRAMES frames; the first frame costs FIRST_EXTRA more in infer."""
    acc = [start, 0, 0, 0, 0]
    lines = [HEAD]
    for f in range(frames):
        for code, add in ((1, None), (2, pre), (3, infer), (4, post)):
            if add is not None:
                extra = first_extra if (f == 0 and code == 4) else 0
                acc = [a + b for a, b in zip(acc, add)]
                acc[2] += extra
            lines.append(_line("mark", code, *acc))
    lines.append(_line("exit", 0, *[a + 7 for a in acc]))
    return "\n".join(lines) + "\n"


def test_per_frame_drops_the_first_frame_and_splits_the_stages():
    target, found = marks.parse(_frames(3))
    assert target == "arm" and len(found) == 13 and found[-1].kind == "exit"
    stages = marks.per_frame(found, 3)
    assert stages["pre"] == {"total": 16, "simd": 0, "fp": 0, "int": 10, "ldst": 5, "branch": 1}
    assert stages["infer"]["total"] == 150 and stages["infer"]["simd"] == 50
    assert stages["post"]["total"] == 40  # the first frame's extra 500 is not in it
    assert stages["e2e"]["total"] == 16 + 150 + 40
    for name in marks.MIX:
        assert stages["e2e"][name] == sum(stages[s][name] for s in ("pre", "infer", "post"))


def test_more_frames_average_the_later_ones():
    stages = marks.per_frame(marks.parse(_frames(5))[1], 5)
    assert stages["e2e"]["total"] == 206


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("hello\n", "header"),
        (HEAD + "\nmark 1 10 1 2 3 4\n", "expected"),
        (HEAD + "\nmark 1 10 1 2 3 4 x\n", "whole numbers"),
        (HEAD + "\nmark 1 -10 1 2 3 4 0\n", "whole numbers"),
        (HEAD + "\nmark 1 11 1 2 3 4 0\n", "add up"),
        (HEAD + "\n" + _line("mark", 1, 5, 5, 5, 5, 5) + "\n" + _line("mark", 2, 5, 5, 4, 5, 5),
         "went down"),
        (HEAD + "\nbogus 1 0 0 0 0 0 0\n", "expected"),
    ],
)  # fmt: skip
def test_malformed_output_is_one_error_naming_the_problem(text, message):
    with pytest.raises(marks.MarksError, match=message):
        marks.parse(text)


def test_oversized_output_is_refused():
    with pytest.raises(marks.MarksError, match="larger"):
        marks.parse(HEAD + "\n" + "x" * marks.MAX_BYTES)


def test_a_missing_or_extra_marker_is_refused():
    text = _frames(3)
    lines = text.splitlines()
    with pytest.raises(marks.MarksError, match="expected 3 frames"):
        marks.per_frame(marks.parse("\n".join(lines[:-3] + lines[-2:]))[1], 3)
    with pytest.raises(marks.MarksError, match="expected 2 frames"):
        marks.per_frame(marks.parse(text)[1], 2)
    with pytest.raises(marks.MarksError, match="at least 2"):
        marks.per_frame(marks.parse(text)[1], 1)


def _record(variant, pre, infer, post):
    mix = {k: 0 for k in marks.MIX}
    mix["int"] = pre + infer + post
    return {"host": "pi4-emu", "cpu": "cortex-a72", "qemu_cpu": "cortex-a15",
            "size": "640x480", "variant": variant, "pre": pre, "infer": infer, "post": post,
            "e2e": pre + infer + post, "mix": {s: mix for s in marks.STAGES}}  # fmt: skip


def test_the_fit_brackets_both_thread_readings_and_the_study_range():
    band = fit(10_000_000, 900_000_000, 90_000_000)  # 1,000 M in one thread
    assert band.low == pytest.approx(520e-3 * 1.5e9 / 1e9)  # 1 thread, 520 ms: lowest CPI
    four = 10e6 + 900e6 / (167 / 96) + 90e6
    assert band.high == pytest.approx(570e-3 * 1.5e9 / four)
    low, mid, high = band.ms(1_000_000_000)
    assert low == pytest.approx(520) and low < mid < high


def test_the_table_labels_counts_and_keeps_predictions_in_their_own_column():
    rows = [_record("study", 10_000_000, 900_000_000, 90_000_000),
            _record("fp32", 5_000_000, 450_000_000, 45_000_000)]  # fmt: skip
    text = format_counts(rows, fit(10_000_000, 900_000_000, 90_000_000))
    assert "instructions per frame on cortex-a72" in text and "not a time" in text
    assert "| fp32 | 5.0 | 450.0 | 45.0 | 500.0 |" in text
    assert "| 0.50 |" in text  # ours / study
    assert "predicted ms (model:" in text and "a prediction, not a measurement" in text
    assert "predicted" not in format_counts(rows)  # no fit, no prediction column


def test_the_stated_model_is_the_fit_of_the_counted_study_pipeline():
    from pi_setup.counting import predict

    band = predict.default_fit()
    assert band is not None and 0.7 < band.low < band.high < 1.4  # the README's CPI 0.79-1.25
    records = [dict(_record("fp32", 15_014_616, 720_687_990, 5_254_412))]
    predict.attach(records)
    low, mid, high = band.ms(records[0]["e2e"])
    assert records[0]["predicted_ms"]["mid"] == round(mid, 1) and low < mid < high
    other = dict(_record("fp32", 1, 1, 1), cpu="cortex-a76")
    predict.attach([other])
    assert "predicted_ms" not in other  # fitted on a Pi 4 only: no Pi 5 prediction


def test_odd_sums_still_give_a_mix_that_adds_up_to_the_total():
    """Frames 2 and 3 add one simd and one fp instruction in pre: 0.5 each per frame."""
    acc = [0, 0, 0, 0, 0]
    lines = [HEAD]
    for extra in (None, (1, 0, 0, 0, 0), (0, 1, 0, 0, 0)):
        for code in (1, 2, 3, 4):
            if code == 2 and extra:
                acc = [a + b for a, b in zip(acc, extra)]
            lines.append(_line("mark", code, *acc))
    stages = marks.per_frame(marks.parse("\n".join(lines))[1], 3)
    for stage in marks.STAGES:
        assert stages[stage]["total"] == sum(stages[stage][k] for k in marks.MIX), stage
