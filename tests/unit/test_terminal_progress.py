"""Tasks write stderr through the terminal-safe helper (issue 21 item 6); tqdm's bars there
still redraw in place (carriage return, cursor-up), every other control character is escaped."""


def test_stderr_keeps_progress_bars_and_escapes_the_rest():
    import io

    from tqdm import tqdm

    from deploy.console import SafeStream

    raw = io.StringIO()
    stream = SafeStream(raw, progress=True)
    with tqdm(total=2, desc="pi4", file=stream, position=1, ascii=True) as bar:
        bar.update(2)
    stream.write("note: \x1b[2Jbullseye\x1b]0;owned\x07\n")
    text = raw.getvalue()
    assert "\r" in text and "\x1b[A" in text  # the bar redraws in place
    assert "\\x1b[2Jbullseye\\x1b]0;owned\\x07" in text
    assert "\x1b[2J" not in text and "\x07" not in text
